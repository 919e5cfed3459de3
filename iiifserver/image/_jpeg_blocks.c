/* A crop of a JPEG-tiled pyramid level at its own size, from the stored tiles' DCT blocks.
 *
 * Owns, for the covered tiles of one crop, in one call with the GIL released:
 * - assemble: reading each tile's quantised DCT coefficients (libjpeg's jpeg_read_coefficients),
 *   copying the blocks the crop covers into one image's coefficient arrays, and writing those as
 *   a baseline JPEG (jpeg_write_coefficients);
 * - crop_planes: decoding each tile to its Y, Cb, Cr planes (jpeg_read_raw_data) straight into
 *   the crop's planes.
 * Must not know: TIFF, files, plans, pyvips, HTTP (Python hands in the covered tiles as complete
 * JPEG streams; image/tile_blocks.py and image/tile_planes.py decide when this applies).
 *
 * Why C: a crop at its level's own size whose origin lies on the tiles' MCU grid (full/max, a
 * pct:50 that a pyramid level answers) needs neither inverse nor forward DCT, only entropy
 * decoding and encoding of the stored coefficients. libjpeg's coefficient interface is the one
 * that offers that, and its errors end in longjmp, which only C can catch. Any other crop at its
 * own size (a cited region) is decoded to planes: one call instead of a Python call, three arrays
 * and a copy per tile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

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

static int run(struct job *job)
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

/* ---------------------------------------------------------------- splicing the coded blocks */

/* A Huffman table for parsing: codes of up to 9 bits by lookup, longer ones by length. */
#define SKIP_BITS 11

struct huffman {
    unsigned short lookup[1 << 9]; /* (length << 8) | symbol; 0: longer than 9 bits */
    /* For AC codes of up to SKIP_BITS bits: what the code and its value bits take together
     * (bits 0-4) and how far it moves the coefficient index (bits 5-9; 0: end of block); bit 15
     * set. A parse skips the values without reading them. */
    unsigned short skip[1 << SKIP_BITS];
    int maxcode[18];               /* the largest code of each length, -1: none */
    int offset[17];                /* symbol index of a length's first code, minus that code */
    unsigned char symbols[256];
    unsigned int code_of[256];     /* for encoding: code and length of each symbol (length 0: none) */
    unsigned char length_of[256];
};

static int huffman_build(struct huffman *h, const JHUFF_TBL *table)
{
    int count = 0, code = 0;
    memset(h, 0, sizeof(*h));
    for (int length = 1; length <= 16; length++) {
        int n = table->bits[length];
        h->offset[length] = count - code;
        for (int i = 0; i < n; i++) {
            if (count >= 256)
                return 0;
            unsigned char symbol = table->huffval[count];
            h->symbols[count] = symbol;
            h->code_of[symbol] = (unsigned int)code;
            h->length_of[symbol] = (unsigned char)length;
            if (length <= 9) {
                int shift = 9 - length;
                for (int fill = 0; fill < (1 << shift); fill++)
                    h->lookup[(code << shift) | fill] = (unsigned short)((length << 8) | symbol);
            }
            if (length <= SKIP_BITS) {
                int run = symbol >> 4, size = symbol & 15;
                int advance = size ? run + 1 : run == 15 ? 16 : 0;
                int shift = SKIP_BITS - length;
                for (int fill = 0; fill < (1 << shift); fill++)
                    h->skip[(code << shift) | fill] = (unsigned short)(0x8000 | (advance << 5) | (length + size));
            }
            count++;
            code++;
        }
        h->maxcode[length] = n ? code - 1 : -1;
        if (code > (1 << length))
            return 0; /* more codes than the length holds: a bogus table */
        code <<= 1;
    }
    h->maxcode[17] = 0x7fffffff;
    return 1;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define BIG_ENDIAN_64(v) __builtin_bswap64(v)
#define BIG_ENDIAN_32(v) __builtin_bswap32(v)
#else
#define BIG_ENDIAN_64(v) (v)
#define BIG_ENDIAN_32(v) (v)
#endif

/* Zero bytes after a segment's data: a block that starts inside the data reads at most 64 codes
 * of up to 31 bits each (248 bytes), and each read loads 8 bytes. */
#define PADDING 512

/* An entropy-coded segment without its byte stuffing, read bit by bit (most significant first). */
struct bits {
    const unsigned char *data; /* followed by PADDING zero bytes */
    size_t size;               /* bytes of data */
    size_t at;                 /* bit position */
};

static inline unsigned long long peek64(const struct bits *b)
{
    unsigned long long v;
    memcpy(&v, b->data + (b->at >> 3), sizeof(v)); /* within the padding (see PADDING) */
    return BIG_ENDIAN_64(v) << (b->at & 7);
}

/* The symbol whose code starts `window` (the next bits, most significant first), and its code's
 * length; -1: no code of 16 bits or fewer starts it. */
static inline int lookup_symbol(const struct huffman *h, unsigned long long window, int *length)
{
    unsigned short entry = h->lookup[window >> (64 - 9)];
    if (entry) {
        *length = entry >> 8;
        return entry & 0xff;
    }
    int n = 10;
    while (n <= 16 && (int)(window >> (64 - n)) > h->maxcode[n])
        n++;
    if (n > 16)
        return -1;
    *length = n;
    return h->symbols[h->offset[n] + (int)(window >> (64 - n))];
}

static inline int extend(int v, int s)
{
    return v < (1 << (s - 1)) ? v - (1 << s) + 1 : v;
}

/* One block: its DC difference (into *dc) and its AC codes, as libjpeg's decode_mcu_slow reads
 * them; *ac_at: where its AC codes start. 0, or -1 when the data does not parse. The bits are kept in a register: each code and
 * its value take at most 31 bits, so 32 loaded bits always suffice for the next one. */
static inline int parse_block(struct bits *b, const struct huffman *dc_table, const struct huffman *ac_table, int *dc,
                              size_t *ac_at)
{
    const unsigned char *base = b->data;
    size_t byte = b->at >> 3;
    unsigned long long buffer;
    memcpy(&buffer, base + byte, sizeof(buffer));
    buffer = BIG_ENDIAN_64(buffer);
    int used = (int)(b->at & 7); /* bits of buffer already taken */
    buffer <<= used;
    int valid = 64 - used; /* bits left in buffer */
#define REFILL()                                                                                                       \
    do {                                                                                                               \
        if (valid < 32) {                                                                                              \
            unsigned int word; /* the first byte not loaded yet is byte + 8 */                                        \
            memcpy(&word, base + byte + 8, sizeof(word));                                                              \
            word = BIG_ENDIAN_32(word);                                                                                \
            buffer |= (unsigned long long)word << (32 - valid);                                                       \
            valid += 32;                                                                                               \
            byte += 4;                                                                                                 \
        }                                                                                                              \
    } while (0)
    int length = 0;
    int s = lookup_symbol(dc_table, buffer, &length);
    if (s < 0 || s > 15)
        return -1;
    buffer <<= length;
    valid -= length;
    int v = s ? (int)(buffer >> (64 - s)) : 0;
    buffer <<= s;
    valid -= s;
    *dc = s ? extend(v, s) : 0;
    size_t taken = (size_t)length + (size_t)s;
    *ac_at = b->at + taken;
    for (int k = 1; k < DCTSIZE2;) {
        REFILL();
        unsigned short fast = ac_table->skip[buffer >> (64 - SKIP_BITS)];
        int bits, advance;
        if (fast) {
            bits = fast & 31;
            advance = (fast >> 5) & 31;
        } else {
            int rs = lookup_symbol(ac_table, buffer, &length);
            if (rs < 0)
                return -1;
            int r = rs >> 4;
            s = rs & 15;
            bits = length + s;
            advance = s ? r + 1 : r == 15 ? 16 : 0;
        }
        buffer <<= bits;
        valid -= bits;
        taken += (size_t)bits;
        if (advance == 0)
            break; /* end of block */
        k += advance;
    }
#undef REFILL
    b->at += taken;
    /* A block reads at most 64 codes of up to 31 bits: within PADDING if it started inside the
     * data; ending past the data is libjpeg's "premature end" warning. */
    return b->at <= b->size * 8 ? 0 : -1;
}

/* The output's entropy-coded bits, unstuffed (stuffed when the JPEG is written). */
struct writer {
    unsigned char *data;
    size_t size, capacity; /* bytes */
    unsigned long long pending;
    int pending_bits;
};

/* Room for `bytes` more bytes. */
static int reserve(struct writer *w, size_t bytes)
{
    if (w->size + bytes <= w->capacity)
        return 1;
    size_t grown = w->capacity ? w->capacity : 1 << 16;
    while (grown < w->size + bytes)
        grown *= 2;
    unsigned char *more = realloc(w->data, grown);
    if (more == NULL)
        return 0;
    w->data = more;
    w->capacity = grown;
    return 1;
}

/* n (at most 32) bits; the caller reserved room for them. */
static inline void put_reserved(struct writer *w, unsigned long long value, int n)
{
    w->pending = (w->pending << n) | (value & ((1ULL << n) - 1));
    w->pending_bits += n;
    while (w->pending_bits >= 8) {
        w->pending_bits -= 8;
        w->data[w->size++] = (unsigned char)(w->pending >> w->pending_bits);
    }
}

static int put(struct writer *w, unsigned long long value, int n) /* n <= 32 */
{
    if (n == 0)
        return 1;
    if (!reserve(w, 8))
        return 0;
    put_reserved(w, value, n);
    return 1;
}

/* Bits [from, to) of b, as they are. */
static int copy_bits(struct writer *w, const struct bits *b, size_t from, size_t to)
{
    struct bits at = *b;
    at.at = from;
    if (!reserve(w, (to - from) / 8 + 8))
        return 0;
    while (to - at.at >= 32) {
        put_reserved(w, peek64(&at) >> 32, 32);
        at.at += 32;
    }
    size_t rest = to - at.at;
    if (rest)
        put_reserved(w, peek64(&at) >> (64 - rest), (int)rest);
    return 1;
}

struct coded_tile {
    unsigned char *data; /* the entropy-coded segment, unstuffed, + PADDING zero bytes */
    size_t size;
    size_t *mcu_at;       /* bit position of each MCU, and the end */
    int *first_dc, *last_dc; /* each MCU's first and last block's DC of each component */
};


/* A tile's entropy-coded segment (from `from` to its EOI) without byte stuffing; 0 when it holds
 * another marker (restarts, a second scan) or no EOI. */
static int unstuff(const unsigned char *from, size_t size, struct coded_tile *tile)
{
    tile->data = malloc(size + PADDING);
    if (tile->data == NULL)
        return 0;
    size_t n = 0, i = 0;
    while (i < size) {
        const unsigned char *mark = memchr(from + i, 0xFF, size - i);
        size_t plain = mark == NULL ? size - i : (size_t)(mark - (from + i));
        memcpy(tile->data + n, from + i, plain);
        n += plain;
        i += plain;
        if (mark == NULL)
            break;
        while (i + 1 < size && from[i + 1] == 0xFF)
            i++; /* fill bytes */
        if (i + 1 >= size)
            return 0;
        if (from[i + 1] == 0x00) {
            tile->data[n++] = 0xFF;
            i += 2;
            continue;
        }
        if (from[i + 1] != JPEG_EOI || i + 2 != size)
            return 0; /* a marker inside the scan, or bytes after EOI */
        memset(tile->data + n, 0, PADDING);
        tile->size = n;
        return 1;
    }
    return 0;
}

static int run_splice(struct job *job)
{
    struct jpeg_decompress_struct tile;
    struct failure failure;
    volatile int status = 0;
    volatile Py_ssize_t index = 0;
    struct coded_tile *volatile coded = NULL;
    struct huffman *volatile tables = NULL; /* DC, AC of each component of the first tile */
    struct writer w = {NULL, 0, 0, 0, 0};
    unsigned char *volatile header = NULL;
    volatile size_t header_size = 0;
    JQUANT_TBL reference_tables[2];
    JQUANT_TBL *reference[2] = {&reference_tables[0], &reference_tables[1]};

    memset(&tile, 0, sizeof(tile));
    tile.err = refusing(&failure);
    if (quality_tables(job->quality, reference_tables) < 0) {
        snprintf(job->message, sizeof(job->message), "out of memory");
        return FAILED;
    }
    if (setjmp(failure.escape)) {
        snprintf(job->message, sizeof(job->message), "tile %zd: %s", (Py_ssize_t)index, failure.message);
        status = FAILED;
        goto done;
    }
    jpeg_create_decompress(&tile);
    coded = calloc((size_t)job->count, sizeof(*coded));
    tables = calloc(2 * MAX_COMPS_IN_SCAN, sizeof(*tables));
    if (coded == NULL || tables == NULL) {
        snprintf(job->message, sizeof(job->message), "out of memory");
        status = FAILED;
        goto done;
    }
    int rows = (int)(job->count / job->columns), components = 0, blocks_h[MAX_COMPS_IN_SCAN], blocks_v[MAX_COMPS_IN_SCAN];
    int mcu_w = 0, mcu_h = 0, mcus_across = 0, mcus_down = 0;
    JHUFF_TBL first_dc[MAX_COMPS_IN_SCAN], first_ac[MAX_COMPS_IN_SCAN];
    for (index = 0; index < job->count; index++) {
        jpeg_mem_src(&tile, job->data[index], job->sizes[index]);
        if (jpeg_read_header(&tile, TRUE) != JPEG_HEADER_OK) {
            snprintf(job->message, sizeof(job->message), "tile %zd: no image", (Py_ssize_t)index);
            status = FAILED;
            goto done;
        }
        int gray = tile.num_components == 1;
        int want_h = gray ? 1 : job->h_factor, want_v = gray ? 1 : job->v_factor;
        int fits = (tile.jpeg_color_space == (gray ? JCS_GRAYSCALE : JCS_YCbCr)) &&
                   (gray || tile.num_components == 3) && tile.data_precision == 8 && !tile.progressive_mode &&
                   !tile.arith_code && tile.restart_interval == 0 && tile.comps_in_scan == tile.num_components &&
                   tile.max_h_samp_factor == want_h && tile.max_v_samp_factor == want_v &&
                   (int)tile.image_width == job->tile_width && (int)tile.image_height == job->tile_height &&
                   tables_match(&tile, reference);
        for (int c = 0; fits && c < tile.num_components; c++) {
            jpeg_component_info *info = tile.cur_comp_info[c];
            fits = info == &tile.comp_info[c] && info->h_samp_factor == (c == 0 ? want_h : 1) &&
                   info->v_samp_factor == (c == 0 ? want_v : 1) && tile.dc_huff_tbl_ptrs[info->dc_tbl_no] != NULL &&
                   tile.ac_huff_tbl_ptrs[info->ac_tbl_no] != NULL;
        }
        if (index == 0 && fits) {
            components = tile.num_components;
            mcu_w = 8 * want_h;
            mcu_h = 8 * want_v;
            mcus_across = job->tile_width / mcu_w;
            mcus_down = job->tile_height / mcu_h;
            fits = job->tile_width % mcu_w == 0 && job->tile_height % mcu_h == 0 && job->x % mcu_w == 0 &&
                   job->y % mcu_h == 0 && job->x < job->tile_width && job->y < job->tile_height &&
                   (job->x + job->width + job->tile_width - 1) / job->tile_width == job->columns &&
                   (job->y + job->height + job->tile_height - 1) / job->tile_height == rows;
            for (int c = 0; fits && c < components; c++) {
                jpeg_component_info *info = tile.cur_comp_info[c];
                blocks_h[c] = info->h_samp_factor;
                blocks_v[c] = info->v_samp_factor;
                first_dc[c] = *tile.dc_huff_tbl_ptrs[info->dc_tbl_no];
                first_ac[c] = *tile.ac_huff_tbl_ptrs[info->ac_tbl_no];
                fits = huffman_build(&tables[2 * c], &first_dc[c]) && huffman_build(&tables[2 * c + 1], &first_ac[c]);
            }
            if (fits) {
                /* The output's header: the first tile's tables and frame, the frame's size the crop's. */
                size_t through_sos = (size_t)(tile.src->next_input_byte - job->data[0]);
                header = malloc(through_sos + 32);
                if (header == NULL) {
                    snprintf(job->message, sizeof(job->message), "out of memory");
                    status = FAILED;
                    goto done;
                }
                static const unsigned char jfif[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00,
                                                     0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00};
                memcpy(header, jfif, sizeof(jfif));
                size_t n = sizeof(jfif), at = 2;
                const unsigned char *src = job->data[0];
                int framed = 0;
                /* Segments as libjpeg writes them: tables, frame, Huffman tables, scan. */
                for (int pass = 0; pass < 3 && fits; pass++) {
                    for (at = 2; at + 4 <= through_sos;) {
                        if (src[at] != 0xFF) {
                            fits = 0;
                            break;
                        }
                        int marker = src[at + 1];
                        size_t length = ((size_t)src[at + 2] << 8) | src[at + 3];
                        if (at + 2 + length > through_sos) {
                            fits = 0;
                            break;
                        }
                        int kind = marker == 0xDB ? 0 : marker == 0xC0 ? 1 : marker == 0xC4 ? 2 : marker == 0xDA ? 3 : -1;
                        if (kind == pass || (pass == 2 && kind == 3)) {
                            memcpy(header + n, src + at, 2 + length);
                            if (kind == 1) { /* SOF0: height, width at bytes 5-8 */
                                header[n + 5] = (unsigned char)(job->height >> 8);
                                header[n + 6] = (unsigned char)job->height;
                                header[n + 7] = (unsigned char)(job->width >> 8);
                                header[n + 8] = (unsigned char)job->width;
                                framed = 1;
                            }
                            n += 2 + length;
                        } else if (kind == -1 && (marker < 0xE0 || marker > 0xEF) && marker != 0xFE) {
                            fits = 0; /* something this splice would not carry over */
                            break;
                        }
                        at += 2 + length;
                    }
                }
                fits = fits && framed && n <= through_sos + 32;
                header_size = n;
            }
        } else if (fits) {
            for (int c = 0; fits && c < components; c++) {
                jpeg_component_info *info = tile.cur_comp_info[c];
                const JHUFF_TBL *dc = tile.dc_huff_tbl_ptrs[info->dc_tbl_no], *ac = tile.ac_huff_tbl_ptrs[info->ac_tbl_no];
                fits = !memcmp(dc->bits, first_dc[c].bits, sizeof(dc->bits)) &&
                       !memcmp(dc->huffval, first_dc[c].huffval, sizeof(dc->huffval)) &&
                       !memcmp(ac->bits, first_ac[c].bits, sizeof(ac->bits)) &&
                       !memcmp(ac->huffval, first_ac[c].huffval, sizeof(ac->huffval));
            }
        }
        if (!fits || tile.num_components != components) {
            status = NOT_APPLICABLE;
            goto done;
        }
        /* Parse every MCU of the tile, as libjpeg would decode them. */
        struct coded_tile *t = &coded[index];
        size_t left = tile.src->bytes_in_buffer;
        if (!unstuff(tile.src->next_input_byte, left, t)) {
            snprintf(job->message, sizeof(job->message), "tile %zd: not one scan ended by EOI", (Py_ssize_t)index);
            status = FAILED;
            goto done;
        }
        jpeg_abort_decompress(&tile);
        int mcus = mcus_across * mcus_down;
        t->mcu_at = malloc(sizeof(size_t) * (size_t)(mcus + 1));
        t->first_dc = malloc(sizeof(int) * (size_t)(mcus * components));
        t->last_dc = malloc(sizeof(int) * (size_t)(mcus * components));
        if (t->mcu_at == NULL || t->first_dc == NULL || t->last_dc == NULL) {
            snprintf(job->message, sizeof(job->message), "out of memory");
            status = FAILED;
            goto done;
        }
        struct bits b = {t->data, t->size, 0};
        int predictor[MAX_COMPS_IN_SCAN] = {0};
        for (int m = 0; m < mcus; m++) {
            t->mcu_at[m] = b.at;
            for (int c = 0; c < components; c++) {
                for (int k = 0; k < blocks_h[c] * blocks_v[c]; k++) {
                    int dc;
                    size_t ac_at;
                    if (parse_block(&b, &tables[2 * c], &tables[2 * c + 1], &dc, &ac_at) < 0) {
                        snprintf(job->message, sizeof(job->message), "tile %zd: corrupt data in block row %d",
                                 (Py_ssize_t)index, m / mcus_across);
                        status = FAILED;
                        goto done;
                    }
                    predictor[c] += dc;
                    if (k == 0)
                        t->first_dc[m * components + c] = predictor[c];
                }
                t->last_dc[m * components + c] = predictor[c];
            }
        }
        t->mcu_at[mcus] = b.at;
        if (t->size * 8 - b.at >= 8) { /* whole bytes left over: libjpeg warns of extraneous data */
            snprintf(job->message, sizeof(job->message), "tile %zd: data after the last block", (Py_ssize_t)index);
            status = FAILED;
            goto done;
        }
    }

    /* The crop's MCUs in order: from each tile the run of each MCU row that the crop covers, its
     * first MCU with each component's first DC coded again against the block before it. */
    int out_across = (job->width + mcu_w - 1) / mcu_w, out_down = (job->height + mcu_h - 1) / mcu_h;
    int x0 = job->x / mcu_w, y0 = job->y / mcu_h;
    int out_predictor[MAX_COMPS_IN_SCAN] = {0};
    for (int row = 0; row < out_down; row++) {
        int tile_row = (y0 + row) / mcus_down, within = (y0 + row) % mcus_down;
        for (int column = 0; column < job->columns; column++) {
            int start = column == 0 ? x0 : 0;
            int end = x0 + out_across - column * mcus_across;
            end = end < mcus_across ? end : mcus_across;
            if (start >= end)
                continue;
            index = (Py_ssize_t)tile_row * job->columns + column;
            const struct coded_tile *t = &coded[index];
            struct bits b = {t->data, t->size, 0};
            int m0 = within * mcus_across + start, m1 = within * mcus_across + end;
            b.at = t->mcu_at[m0];
            for (int c = 0; c < components; c++) {
                const struct huffman *dc_table = &tables[2 * c];
                for (int k = 0; k < blocks_h[c] * blocks_v[c]; k++) {
                    size_t block_at = b.at, ac_at;
                    int dc;
                    (void)parse_block(&b, dc_table, &tables[2 * c + 1], &dc, &ac_at); /* parsed above */
                    if (k > 0) {
                        if (!copy_bits(&w, &b, block_at, b.at))
                            goto no_memory;
                        continue;
                    }
                    /* The first block: its DC difference coded against the block now before it. */
                    int diff = t->first_dc[m0 * components + c] - out_predictor[c];
                    int magnitude = diff < 0 ? -diff : diff, category = 0;
                    while (magnitude >> category)
                        category++;
                    if (category > 11 || dc_table->length_of[category] == 0) {
                        status = NOT_APPLICABLE; /* a difference the tiles' DC table cannot code */
                        goto done;
                    }
                    int value = diff < 0 ? diff - 1 : diff;
                    if (!put(&w, dc_table->code_of[category], dc_table->length_of[category]) ||
                        !put(&w, (unsigned long long)(unsigned int)value, category) || !copy_bits(&w, &b, ac_at, b.at))
                        goto no_memory;
                }
            }
            if (!copy_bits(&w, &b, t->mcu_at[m0 + 1], t->mcu_at[m1]))
                goto no_memory;
            for (int c = 0; c < components; c++)
                out_predictor[c] = t->last_dc[(m1 - 1) * components + c];
        }
    }
    if (w.pending_bits && !put(&w, 0x7F, 8 - w.pending_bits)) /* pad with ones, as libjpeg */
        goto no_memory;

    /* The JPEG: header, the segment with its 0xFF bytes stuffed, EOI. */
    size_t stuffed = 0;
    for (const unsigned char *mark = w.data; (mark = memchr(mark, 0xFF, w.size - (size_t)(mark - w.data))) != NULL; mark++)
        stuffed++;
    job->out_size = header_size + w.size + stuffed + 2;
    job->out = malloc(job->out_size);
    if (job->out == NULL)
        goto no_memory;
    memcpy(job->out, header, header_size);
    unsigned char *o = job->out + header_size;
    for (size_t i = 0; i < w.size;) {
        const unsigned char *mark = memchr(w.data + i, 0xFF, w.size - i);
        size_t plain = mark == NULL ? w.size - i : (size_t)(mark - (w.data + i)) + 1;
        memcpy(o, w.data + i, plain);
        o += plain;
        i += plain;
        if (mark != NULL)
            *o++ = 0x00;
    }
    *o++ = 0xFF;
    *o++ = JPEG_EOI;
    goto done;
no_memory:
    snprintf(job->message, sizeof(job->message), "out of memory");
    status = FAILED;
done:
    if (coded != NULL) {
        for (Py_ssize_t i = 0; i < job->count; i++) {
            free(coded[i].data);
            free(coded[i].mcu_at);
            free(coded[i].first_dc);
            free(coded[i].last_dc);
        }
        free(coded);
    }
    free(tables);
    free(w.data);
    free(header);
    if (status != 0 && job->out != NULL) {
        free(job->out);
        job->out = NULL;
    }
    jpeg_destroy_decompress(&tile);
    return status;
}

/* ---------------------------------------------------------------- decoding to planes */

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

/* The tiles of a call as C pointers: a tuple of bytes, so the GIL may be released. */
static PyObject *tile_pointers(PyObject *tiles_in, const char *name, const unsigned char ***data, unsigned long **sizes,
                               Py_ssize_t *count)
{
    PyObject *tiles = PySequence_Tuple(tiles_in);
    if (tiles == NULL)
        return NULL;
    *count = PyTuple_GET_SIZE(tiles);
    *data = PyMem_Malloc(sizeof(**data) * (size_t)(*count ? *count : 1));
    *sizes = PyMem_Malloc(sizeof(**sizes) * (size_t)(*count ? *count : 1));
    if (*data == NULL || *sizes == NULL) {
        PyMem_Free(*data);
        PyMem_Free(*sizes);
        Py_DECREF(tiles);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *count; i++) {
        PyObject *item = PyTuple_GET_ITEM(tiles, i);
        if (!PyBytes_Check(item)) {
            PyMem_Free(*data);
            PyMem_Free(*sizes);
            Py_DECREF(tiles);
            PyErr_Format(PyExc_TypeError, "%s: tiles must be bytes", name);
            return NULL;
        }
        (*data)[i] = (const unsigned char *)PyBytes_AS_STRING(item);
        (*sizes)[i] = (unsigned long)PyBytes_GET_SIZE(item);
    }
    return tiles;
}

static PyObject *crop_planes(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"tiles", "tile_width", "tile_height", "columns", "first_column", "first_row",
                               "components", "h_factor", "v_factor", "spans", "outs", NULL};
    PyObject *tiles_in, *spans_in, *outs_in;
    struct planes_job job;
    memset(&job, 0, sizeof(job));
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OiiiiiiiiOO:crop_planes", keywords, &tiles_in, &job.tile_width,
                                     &job.tile_height, &job.columns, &job.first_column, &job.first_row,
                                     &job.components, &job.h_factor, &job.v_factor, &spans_in, &outs_in))
        return NULL;
    job.planes = job.components;
    if (job.tile_width <= 0 || job.tile_height <= 0 || job.tile_width > 4096 || job.tile_height > 4096 ||
        job.columns <= 0 || job.first_column < 0 || job.first_row < 0 ||
        (job.components != 1 && job.components != 3) || job.h_factor < 1 || job.h_factor > 2 || job.v_factor < 1 ||
        job.v_factor > 2 || job.tile_width % (8 * job.h_factor) || job.tile_height % (8 * job.v_factor) ||
        !PySequence_Check(spans_in) || !PySequence_Check(outs_in) || PySequence_Size(spans_in) != job.planes ||
        PySequence_Size(outs_in) != job.planes) {
        PyErr_SetString(PyExc_ValueError, "crop_planes: geometry out of range");
        return NULL;
    }
    Py_buffer views[3];
    int held = 0;
    PyObject *result = NULL, *tiles = NULL;
    for (int p = 0; p < job.planes; p++) {
        struct span *s = &job.spans[p];
        PyObject *span = PySequence_GetItem(spans_in, p);
        int ok = span != NULL && PyArg_ParseTuple(span, "iiiiii", &s->x0, &s->nx, &s->y0, &s->ny, &s->across, &s->down);
        Py_XDECREF(span);
        if (!ok)
            goto out;
        int expected = p == 0 ? 1 : 0;
        if (s->x0 < 0 || s->y0 < 0 || s->nx <= 0 || s->ny <= 0 || s->across < 1 || s->down < 1 ||
            s->across > 2 || s->down > 2 || (expected && (s->across != 1 || s->down != 1)) ||
            (!expected && (s->across != job.h_factor || s->down != job.v_factor))) {
            PyErr_SetString(PyExc_ValueError, "crop_planes: a span out of range");
            goto out;
        }
        PyObject *target = PySequence_GetItem(outs_in, p);
        if (target == NULL)
            goto out;
        ok = PyObject_GetBuffer(target, &views[p], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) == 0;
        Py_DECREF(target);
        if (!ok)
            goto out;
        held = p + 1;
        if (views[p].len != (Py_ssize_t)s->nx * s->ny) {
            PyErr_SetString(PyExc_ValueError, "crop_planes: an output is not its span's size");
            goto out;
        }
        s->out = views[p].buf;
    }
    tiles = tile_pointers(tiles_in, "crop_planes", &job.data, &job.sizes, &job.count);
    if (tiles == NULL)
        goto out;
    if (job.count == 0 || job.count % job.columns) {
        PyErr_SetString(PyExc_ValueError, "crop_planes: the tiles do not fill whole rows");
        goto out;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_planes(&job);
    Py_END_ALLOW_THREADS
    if (status == NOT_APPLICABLE) {
        result = Py_NewRef(Py_None);
    } else if (status == FAILED) {
        PyErr_SetString(PyExc_ValueError, job.message);
    } else {
        result = PyTuple_New(job.planes);
        for (int p = 0; result != NULL && p < job.planes; p++) {
            PyObject *reach = Py_BuildValue("(ii)", job.spans[p].reach_x, job.spans[p].reach_y);
            if (reach == NULL) {
                Py_CLEAR(result);
                break;
            }
            PyTuple_SET_ITEM(result, p, reach);
        }
    }
out:
    if (tiles != NULL) {
        PyMem_Free(job.data);
        PyMem_Free(job.sizes);
        Py_DECREF(tiles);
    }
    for (int p = 0; p < held; p++)
        PyBuffer_Release(&views[p]);
    return result;
}

/* assemble and splice: the same arguments, the same answers (a JPEG, None or ValueError). */
static PyObject *call_blocks(PyObject *args, PyObject *kwargs, const char *format, int (*runner)(struct job *))
{
    static char *keywords[] = {"tiles", "tile_width", "tile_height", "columns", "x", "y",
                               "width", "height", "quality", "h_factor", "v_factor", NULL};
    const char *name = format + strlen("Oiiiiiiiiii:");
    PyObject *tiles_in;
    struct job job;
    memset(&job, 0, sizeof(job));
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, keywords, &tiles_in, &job.tile_width, &job.tile_height,
                                     &job.columns, &job.x, &job.y, &job.width, &job.height, &job.quality,
                                     &job.h_factor, &job.v_factor))
        return NULL;
    if (job.tile_width <= 0 || job.tile_height <= 0 || job.tile_width > 65500 || job.tile_height > 65500 ||
        job.columns <= 0 || job.x < 0 || job.y < 0 || job.width <= 0 || job.height <= 0 ||
        job.width > JPEG_MAX_DIMENSION || job.height > JPEG_MAX_DIMENSION || job.quality < 1 || job.quality > 100 ||
        job.h_factor < 1 || job.h_factor > 2 || job.v_factor < 1 || job.v_factor > 2) {
        PyErr_Format(PyExc_ValueError, "%s: geometry or quality out of range", name);
        return NULL;
    }
    /* A tuple of the bytes: the list cannot change under the released GIL, bytes cannot at all. */
    PyObject *tiles = tile_pointers(tiles_in, name, &job.data, &job.sizes, &job.count);
    if (tiles == NULL)
        return NULL;
    PyObject *result = NULL;
    if (job.count == 0 || job.count % job.columns) {
        PyErr_Format(PyExc_ValueError, "%s: the tiles do not fill whole rows", name);
    } else {
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = runner(&job);
        Py_END_ALLOW_THREADS
        if (status == NOT_APPLICABLE)
            result = Py_NewRef(Py_None);
        else if (status == FAILED)
            PyErr_SetString(PyExc_ValueError, job.message);
        else
            result = PyBytes_FromStringAndSize((const char *)job.out, (Py_ssize_t)job.out_size);
        free(job.out);
    }
    PyMem_Free(job.data);
    PyMem_Free(job.sizes);
    Py_DECREF(tiles);
    return result;
}

static PyObject *assemble(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return call_blocks(args, kwargs, "Oiiiiiiiiii:assemble", run);
}

static PyObject *splice(PyObject *module, PyObject *args, PyObject *kwargs)
{
    return call_blocks(args, kwargs, "Oiiiiiiiiii:splice", run_splice);
}

static PyMethodDef methods[] = {
    {"assemble", (PyCFunction)(void (*)(void))assemble, METH_VARARGS | METH_KEYWORDS,
     "assemble(tiles, tile_width, tile_height, columns, x, y, width, height, quality, h_factor, v_factor)\n"
     "--\n\n"
     "The crop (x, y, width, height) of the covered tiles (complete JPEG streams, row-major,\n"
     "`columns` per row; x, y from the first tile's corner, on its MCU grid) as one baseline JPEG\n"
     "made from their DCT blocks. None when the tiles are not for this (colour space, sampling\n"
     "other than h_factor x v_factor, tables other than libjpeg's at `quality`, geometry);\n"
     "ValueError when libjpeg refuses or warns about a tile."},
    {"splice", (PyCFunction)(void (*)(void))splice, METH_VARARGS | METH_KEYWORDS,
     "splice(tiles, tile_width, tile_height, columns, x, y, width, height, quality, h_factor, v_factor)\n"
     "--\n\n"
     "What assemble makes (the same blocks, the same arguments), without decoding the blocks:\n"
     "each tile's entropy-coded data is parsed to find its MCUs, and the runs the crop covers\n"
     "are copied bit for bit, each run's first DC differences coded again. Needs tiles with one\n"
     "baseline scan, no restart markers, the same Huffman tables (kept in the output). None when\n"
     "not applicable (then assemble may be); ValueError when a tile's data does not parse or\n"
     "ends otherwise than libjpeg would accept without a warning."},
    {"crop_planes", (PyCFunction)(void (*)(void))crop_planes, METH_VARARGS | METH_KEYWORDS,
     "crop_planes(tiles, tile_width, tile_height, columns, first_column, first_row, components, h_factor,\n"
     "            v_factor, spans, outs)\n"
     "--\n\n"
     "Decodes the covered tiles (complete JPEG streams, row-major, `columns` per row, the first at\n"
     "tile column `first_column`, row `first_row` of the level) to their Y, Cb, Cr planes and copies\n"
     "each plane's span (x0, nx, y0, ny, across, down: samples of that plane, luma pixels per\n"
     "sample) into its output (a writable C-contiguous buffer of ny x nx bytes). Returns each\n"
     "plane's (columns, rows) the tiles reached; None when the first tile is not sampled `components`, h_factor x v_factor\n"
     "(or is RGB- or CMYK-coded); ValueError when libjpeg refuses or warns about a tile, a later\n"
     "tile is sampled otherwise, or a tile is not tile_width x tile_height."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg_blocks", "DCT-block assembly of JPEG tiles (libjpeg).", -1, methods,
};

PyMODINIT_FUNC PyInit__jpeg_blocks(void)
{
    return PyModule_Create(&module);
}
