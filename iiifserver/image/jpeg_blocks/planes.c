/* crop_planes: each covered tile decoded to its Y, Cb, Cr planes (jpeg_read_raw_data) straight into
 * the crop's planes.
 * Part of _jpeg_blocks.c, which includes it: one translation unit, not compiled on its own. */

/* Each plane's part of the crop, in that plane's own samples of the level (plane 0: luma). */
struct span {
    int x0, nx, y0, ny;  /* first sample and count, across and down */
    int across, down;     /* luma pixels per sample of this plane */
    unsigned char *out;   /* ny rows of nx samples */
    int reach_x, reach_y; /* columns and rows of the span the tiles reached */
};

struct planes_job {
    /* in */
    Py_ssize_t count;
    const unsigned char **data;
    unsigned long *sizes;
    int tile_width, tile_height, columns, first_column, first_row, components, h_factor, v_factor;
    int planes;
    struct span spans[3];
    /* out */
    char message[JMSG_LENGTH_MAX + 64];
};

/* Whether a tile is sampled as wanted. A sampling decode_planes does not take (an RGB- or
 * CMYK-coded stream, 4:2:2) is not for this path (NOT_APPLICABLE), as tile_codec.decode_planes
 * refuses it too; one it takes but not the wanted one: not for this path on the first tile,
 * an error on a later one (the tiles disagree, as crop_planes reports). */
static int sampling_status(j_decompress_ptr tile, struct planes_job *job, int first)
{
    /* The samplings tile_codec.decode_planes takes: grey, or YCbCr 4:4:4 or 4:2:0. */
    int h = tile->max_h_samp_factor, v = tile->max_v_samp_factor;
    int planar = tile->data_precision == 8 &&
                 ((tile->jpeg_color_space == JCS_GRAYSCALE && tile->num_components == 1) ||
                  (tile->jpeg_color_space == JCS_YCbCr && tile->num_components == 3 && h == v && h <= 2));
    for (int c = 1; planar && c < tile->num_components; c++)
        planar = tile->comp_info[c].h_samp_factor == 1 && tile->comp_info[c].v_samp_factor == 1;
    if (!planar)
        return NOT_APPLICABLE;
    int gray = job->components == 1;
    int wanted = tile->num_components == job->components && (gray || (h == job->h_factor && v == job->v_factor));
    if (wanted)
        return 0;
    return first ? NOT_APPLICABLE : FAILED;
}

static int run_planes(struct planes_job *job)
{
    struct jpeg_decompress_struct tile;
    struct failure failure;
    volatile int status = 0;
    volatile Py_ssize_t index = 0;
    unsigned char *volatile scratch = NULL;

    memset(&tile, 0, sizeof(tile));
    tile.err = refusing(&failure);
    if (setjmp(failure.escape)) {
        snprintf(job->message, sizeof(job->message), "tile %zd: %s", (Py_ssize_t)index, failure.message);
        status = FAILED;
        goto done;
    }
    jpeg_create_decompress(&tile);
    int max_v = job->components == 1 ? 1 : job->v_factor;
    /* One iMCU row of every component (rows of whole blocks, one block more than the tile). */
    size_t row_bytes = (size_t)job->tile_width + 16, rows_per_imcu = (size_t)(max_v * DCTSIZE);
    scratch = malloc(row_bytes * rows_per_imcu * (size_t)job->planes);
    if (scratch == NULL) {
        snprintf(job->message, sizeof(job->message), "out of memory");
        status = FAILED;
        goto done;
    }
    JSAMPROW rows[3][2 * DCTSIZE];
    JSAMPARRAY image[3];
    for (int p = 0; p < job->planes; p++) {
        image[p] = rows[p];
        for (size_t r = 0; r < rows_per_imcu; r++)
            rows[p][r] = scratch + (p * rows_per_imcu + r) * row_bytes;
    }
    for (index = 0; index < job->count; index++) {
        int column = job->first_column + (int)(index % job->columns);
        int row = job->first_row + (int)(index / job->columns);
        jpeg_mem_src(&tile, job->data[index], job->sizes[index]);
        if (jpeg_read_header(&tile, TRUE) != JPEG_HEADER_OK) {
            snprintf(job->message, sizeof(job->message), "tile %zd: no image", (Py_ssize_t)index);
            status = FAILED;
            goto done;
        }
        status = sampling_status(&tile, job, index == 0);
        if (status == FAILED)
            snprintf(job->message, sizeof(job->message), "tile %zd: sampled unlike the first tile", (Py_ssize_t)index);
        if (status != 0)
            goto done;
        if ((int)tile.image_width != job->tile_width || (int)tile.image_height != job->tile_height) {
            snprintf(job->message, sizeof(job->message), "tile %zd: %ux%u, not %dx%d", (Py_ssize_t)index,
                     tile.image_width, tile.image_height, job->tile_width, job->tile_height);
            status = FAILED;
            goto done;
        }
        tile.raw_data_out = TRUE;
        tile.dct_method = JDCT_ISLOW; /* as TurboJPEG decodes (tile_codec.decode_planes) */
        jpeg_start_decompress(&tile);
        /* Every row is decoded, and the stream read to its end (jpeg_finish_decompress): stopping
         * below the crop would spare about a tenth of a region's decoding, but damage is mostly
         * seen at a stream's end (data left over before EOI), and a tile decoded only in part
         * could then show it: a tile overwritten with noise from a third of its bytes on decodes
         * every row without a warning, until 5,390 bytes are left over before EOI (tried, and
         * tests/image/test_tile_planes.py's damaged-tile test then fails). The same checks as
         * tile_codec.decode_planes (TurboJPEG). */
        int imcu_rows = (int)((tile.output_height + rows_per_imcu - 1) / rows_per_imcu);
        for (int imcu = 0; imcu < imcu_rows; imcu++) {
            if (jpeg_read_raw_data(&tile, image, (JDIMENSION)rows_per_imcu) != rows_per_imcu) {
                snprintf(job->message, sizeof(job->message), "tile %zd: ends early", (Py_ssize_t)index);
                status = FAILED;
                goto done;
            }
            for (int p = 0; p < job->planes; p++) {
                struct span *s = &job->spans[p];
                int per_imcu = (p == 0 ? max_v : 1) * DCTSIZE;
                int left = column * job->tile_width / s->across, top = row * job->tile_height / s->down;
                int tile_columns = job->tile_width / s->across;
                int first = top + imcu * per_imcu; /* this iMCU row's first sample row, level coordinates */
                int a = s->y0 > first ? s->y0 : first;
                int b = s->y0 + s->ny < first + per_imcu ? s->y0 + s->ny : first + per_imcu;
                int c = s->x0 > left ? s->x0 : left;
                int d = s->x0 + s->nx < left + tile_columns ? s->x0 + s->nx : left + tile_columns;
                if (a >= b || c >= d)
                    continue;
                for (int y = a; y < b; y++)
                    memcpy(s->out + (size_t)(y - s->y0) * s->nx + (c - s->x0), rows[p][y - first] + (c - left),
                           (size_t)(d - c));
                if (d - s->x0 > s->reach_x)
                    s->reach_x = d - s->x0;
                if (b - s->y0 > s->reach_y)
                    s->reach_y = b - s->y0;
            }
        }
        jpeg_finish_decompress(&tile);
    }
done:
    free(scratch);
    jpeg_destroy_decompress(&tile);
    return status;
}
