/* What the three jobs of _jpeg_blocks share: libjpeg's error manager that refuses warnings and
 * escapes with longjmp (``refusing``), the status codes, a job on a crop's covered tiles
 * (``struct job``: assemble and splice take the same), and the quantisation tables an encoder
 * writes at a quality, with the check that a tile's tables are those.
 * Part of _jpeg_blocks.c, which includes it: one translation unit, not compiled on its own. */
#ifndef IIIFSERVER_JPEG_BLOCKS_COMMON_H
#define IIIFSERVER_JPEG_BLOCKS_COMMON_H

struct failure {
    struct jpeg_error_mgr pub;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
};

static void fail_exit(j_common_ptr info)
{
    struct failure *failure = (struct failure *)info->err;
    (*info->err->format_message)(info, failure->message);
    longjmp(failure->escape, 1);
}

/* A warning is damaged data that libjpeg would decode past: refused like an error. */
static void fail_on_warning(j_common_ptr info, int level)
{
    if (level < 0)
        fail_exit(info);
}

/* libjpeg's error manager, refusing warnings and escaping to `failure->escape`. */
static struct jpeg_error_mgr *refusing(struct failure *failure)
{
    struct jpeg_error_mgr *errors = jpeg_std_error(&failure->pub);
    errors->error_exit = fail_exit;
    errors->emit_message = fail_on_warning;
    return errors;
}

/* The quantisation tables (luma, chroma) an encoder writes at `quality`: libjpeg's, as
 * TurboJPEG's compressor writes them. 0, or -1 when libjpeg fails (out of memory). */
static int quality_tables(int quality, JQUANT_TBL tables[2])
{
    struct jpeg_compress_struct maker;
    struct failure failure;
    memset(&maker, 0, sizeof(maker));
    maker.err = refusing(&failure);
    if (setjmp(failure.escape)) {
        jpeg_destroy_compress(&maker);
        return -1;
    }
    jpeg_create_compress(&maker);
    maker.in_color_space = JCS_YCbCr;
    maker.input_components = 3;
    jpeg_set_defaults(&maker);
    jpeg_set_quality(&maker, quality, TRUE);
    tables[0] = *maker.quant_tbl_ptrs[0];
    tables[1] = *maker.quant_tbl_ptrs[1];
    jpeg_destroy_compress(&maker);
    return 0;
}

/* Not applicable (Python tries the next path), as opposed to an error (damaged data). */
#define NOT_APPLICABLE 1
#define FAILED 2

struct job {
    /* in */
    Py_ssize_t count;
    const unsigned char **data;
    unsigned long *sizes;
    int tile_width, tile_height, columns, x, y, width, height, quality, h_factor, v_factor;
    /* out */
    unsigned char *out;
    unsigned long out_size;
    char message[JMSG_LENGTH_MAX + 64];
};

/* The tile's tables are the ones an encoder at the wanted quality writes (`reference`: luma,
 * chroma), so the assembled JPEG is what encoding at that quality would quantise to. */
static int tables_match(j_decompress_ptr tile, JQUANT_TBL *const reference[2])
{
    for (int c = 0; c < tile->num_components; c++) {
        int slot = tile->comp_info[c].quant_tbl_no;
        JQUANT_TBL *table = slot >= 0 && slot < NUM_QUANT_TBLS ? tile->quant_tbl_ptrs[slot] : NULL;
        if (table == NULL || memcmp(table->quantval, reference[c == 0 ? 0 : 1]->quantval, sizeof(table->quantval)))
            return 0;
    }
    return 1;
}

#endif
