/* splice: what assemble makes, without decoding the blocks. Each covered tile's entropy-coded data
 * is parsed (Huffman codes skipped by table, values not read) to find its MCUs; the runs the crop
 * covers are copied bit for bit, each run's first DC differences coded again.
 * Part of _jpeg_blocks.c, which includes it: one translation unit, not compiled on its own. */

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

/* n (1 to 56) bits; the caller reserved room for them and 8 bytes more. Stores a whole word:
 * the bytes past the completed ones are written again by the next store. */
static inline void put_reserved(struct writer *w, unsigned long long value, int n)
{
    unsigned long long pending = (w->pending << n) | (value & ((1ULL << n) - 1));
    int total = w->pending_bits + n; /* at most 7 + 56 */
    unsigned long long word = BIG_ENDIAN_64(pending << (64 - total));
    memcpy(w->data + w->size, &word, sizeof(word));
    w->size += (size_t)(total >> 3);
    w->pending_bits = total & 7;
    w->pending = pending & ((1ULL << w->pending_bits) - 1);
}

static int put(struct writer *w, unsigned long long value, int n) /* n <= 32 */
{
    if (n == 0)
        return 1;
    if (!reserve(w, 16))
        return 0;
    put_reserved(w, value, n);
    return 1;
}

/* Bits [from, to) of b, as they are, 56 at a time (peek64 holds at least 57). */
static int copy_bits(struct writer *w, const struct bits *b, size_t from, size_t to)
{
    struct bits at = *b;
    at.at = from;
    if (!reserve(w, (to - from) / 8 + 16))
        return 0;
    while (to - at.at >= 56) {
        put_reserved(w, peek64(&at) >> 8, 56);
        at.at += 56;
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
