/* assemble: the crop's blocks read from each covered tile's quantised DCT coefficients
 * (jpeg_read_coefficients), copied into one image's coefficient arrays and written as a baseline
 * JPEG (jpeg_write_coefficients): no inverse or forward DCT.
 * Part of _jpeg_blocks.c, which includes it: one translation unit, not compiled on its own. */

static int run_assemble(struct job *job)
{
    struct jpeg_decompress_struct tile;
    struct jpeg_compress_struct out;
    struct failure tile_failure, out_failure;
    JQUANT_TBL reference_tables[2];
    JQUANT_TBL *reference[2] = {&reference_tables[0], &reference_tables[1]};
    volatile int status = 0;
    volatile Py_ssize_t index = 0;
    volatile int out_made = 0;

    memset(&tile, 0, sizeof(tile));
    memset(&out, 0, sizeof(out));
    job->out = NULL;
    job->out_size = 0;
    tile.err = refusing(&tile_failure);
    out.err = refusing(&out_failure);
    if (quality_tables(job->quality, reference_tables) < 0) {
        snprintf(job->message, sizeof(job->message), "out of memory");
        return FAILED;
    }
    if (setjmp(out_failure.escape)) {
        snprintf(job->message, sizeof(job->message), "encode: %s", out_failure.message);
        status = FAILED;
        goto done;
    }
    if (setjmp(tile_failure.escape)) {
        snprintf(job->message, sizeof(job->message), "tile %zd: %s", (Py_ssize_t)index, tile_failure.message);
        status = FAILED;
        goto done;
    }
    jpeg_create_decompress(&tile);
    jpeg_create_compress(&out);
    out_made = 1;
    out.in_color_space = JCS_YCbCr; /* jpeg_copy_critical_parameters sets the rest */
    out.input_components = 3;

    int rows = job->count / job->columns;
    int max_h = 0, max_v = 0, components = 0;
    int offset_x[MAX_COMPONENTS], offset_y[MAX_COMPONENTS], across[MAX_COMPONENTS], down[MAX_COMPONENTS];
    int tile_across[MAX_COMPONENTS], tile_down[MAX_COMPONENTS];
    jvirt_barray_ptr assembled[MAX_COMPONENTS];
    for (index = 0; index < job->count; index++) {
        jpeg_mem_src(&tile, job->data[index], job->sizes[index]);
        if (jpeg_read_header(&tile, TRUE) != JPEG_HEADER_OK) {
            snprintf(job->message, sizeof(job->message), "tile %zd: no image", (Py_ssize_t)index);
            status = FAILED;
            goto done;
        }
        if (index == 0) {
            components = tile.num_components;
            if (!(components == 3 && tile.jpeg_color_space == JCS_YCbCr) &&
                !(components == 1 && tile.jpeg_color_space == JCS_GRAYSCALE)) {
                status = NOT_APPLICABLE;
                goto done;
            }
            max_h = tile.max_h_samp_factor;
            max_v = tile.max_v_samp_factor;
            int want_h = components == 1 ? 1 : job->h_factor, want_v = components == 1 ? 1 : job->v_factor;
            if (tile.data_precision != 8 || tile.comp_info[0].h_samp_factor != want_h ||
                tile.comp_info[0].v_samp_factor != want_v || max_h != want_h || max_v != want_v ||
                (int)tile.image_width != job->tile_width || (int)tile.image_height != job->tile_height ||
                job->tile_width % (8 * max_h) || job->tile_height % (8 * max_v) || job->x % (8 * max_h) ||
                job->y % (8 * max_v) || job->x >= job->tile_width || job->y >= job->tile_height ||
                (job->x + job->width + job->tile_width - 1) / job->tile_width != job->columns ||
                (job->y + job->height + job->tile_height - 1) / job->tile_height != rows) {
                status = NOT_APPLICABLE;
                goto done;
            }
            for (int c = 1; c < components; c++)
                if (tile.comp_info[c].h_samp_factor != 1 || tile.comp_info[c].v_samp_factor != 1) {
                    status = NOT_APPLICABLE;
                    goto done;
                }
        }
        jvirt_barray_ptr *read = jpeg_read_coefficients(&tile);
        if (index == 0) {
            if (!tables_match(&tile, reference)) {
                status = NOT_APPLICABLE;
                goto done;
            }
            jpeg_copy_critical_parameters(&tile, &out);
            out.image_width = job->width;
            out.image_height = job->height;
            out.optimize_coding = FALSE; /* standard Huffman tables, as every render */
            for (int c = 0; c < components; c++) {
                jpeg_component_info *info = &tile.comp_info[c];
                int h = info->h_samp_factor, v = info->v_samp_factor;
                tile_across[c] = job->tile_width * h / (8 * max_h);
                tile_down[c] = job->tile_height * v / (8 * max_v);
                offset_x[c] = job->x * h / (8 * max_h);
                offset_y[c] = job->y * v / (8 * max_v);
                /* Whole MCUs, as jpeg_write_coefficients reads them. */
                int mcus_across = (job->width + 8 * max_h - 1) / (8 * max_h);
                int mcus_down = (job->height + 8 * max_v - 1) / (8 * max_v);
                across[c] = mcus_across * h;
                down[c] = mcus_down * v;
                assembled[c] = (*out.mem->request_virt_barray)((j_common_ptr)&out, JPOOL_IMAGE, TRUE,
                                                               (JDIMENSION)across[c], (JDIMENSION)down[c],
                                                               (JDIMENSION)down[c]);
            }
            (*out.mem->realize_virt_arrays)((j_common_ptr)&out);
        } else if (tile.num_components != components || tile.jpeg_color_space != (components == 1 ? JCS_GRAYSCALE : JCS_YCbCr) ||
                   tile.data_precision != 8 ||
                   (int)tile.image_width != job->tile_width || (int)tile.image_height != job->tile_height ||
                   tile.max_h_samp_factor != max_h || tile.max_v_samp_factor != max_v || !tables_match(&tile, reference)) {
            status = NOT_APPLICABLE;
            goto done;
        }
        for (int c = 0; c < components; c++) {
            if (tile.comp_info[c].h_samp_factor != (c == 0 ? max_h : 1) ||
                tile.comp_info[c].v_samp_factor != (c == 0 ? max_v : 1)) {
                status = NOT_APPLICABLE;
                goto done;
            }
        }
        int row = (int)(index / job->columns), column = (int)(index % job->columns);
        for (int c = 0; c < components; c++) {
            /* This tile's blocks in the assembled arrays' coordinates, clipped to them. */
            int left = column * tile_across[c] - offset_x[c], top = row * tile_down[c] - offset_y[c];
            int from_x = left < 0 ? -left : 0, to_x = tile_across[c];
            int from_y = top < 0 ? -top : 0, to_y = tile_down[c];
            if (left + to_x > across[c])
                to_x = across[c] - left;
            if (top + to_y > down[c])
                to_y = down[c] - top;
            for (int y = from_y; y < to_y; y++) {
                JBLOCKARRAY source = (*tile.mem->access_virt_barray)((j_common_ptr)&tile, read[c], (JDIMENSION)y, 1, FALSE);
                JBLOCKARRAY target = (*out.mem->access_virt_barray)((j_common_ptr)&out, assembled[c],
                                                                    (JDIMENSION)(top + y), 1, TRUE);
                if (to_x > from_x)
                    memcpy(target[0] + left + from_x, source[0] + from_x, (size_t)(to_x - from_x) * sizeof(JBLOCK));
            }
        }
        jpeg_abort_decompress(&tile);
    }
    jpeg_mem_dest(&out, &job->out, &job->out_size);
    jpeg_write_coefficients(&out, assembled);
    jpeg_finish_compress(&out);
done:
    if (status != 0 && job->out != NULL) {
        free(job->out);
        job->out = NULL;
    }
    jpeg_destroy_decompress(&tile);
    if (out_made)
        jpeg_destroy_compress(&out);
    return status;
}
