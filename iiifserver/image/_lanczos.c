/* Lanczos3 resampling of 8-bit planes (one sample per pixel): the Y, Cb and Cr planes of a
 * region decoded from its stored tiles, brought to their output size before they are encoded
 * (image/plane_resize.py). Two passes, down then across, with 14-bit fixed-point weights
 * computed for each output row and column: the kernel stretched by the reduction (as libvips'
 * reduce does), normalised to one, edge samples repeated beyond the plane. The passes hold no
 * Python object and run with the GIL released.
 *
 * Why not libvips: its reduce works on the RGB pixels (three full-size bands where 4:2:0
 * planes hold one and a half) and building its pipeline costs about a tenth of a region's
 * render (image/plane_resize.py has the measurements).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WEIGHT_BITS 14
#define WEIGHT_ONE (1 << WEIGHT_BITS)
#define LOBES 3.0
/* An output sample never draws on more source samples than this along one axis: a reduction
 * by up to 64 (the planner sends larger ones to a smaller level or libvips' resize). */
#define MAX_TAPS 400 /* a multiple of 8 */
/* Planes are at most this many samples a side (the server's are bounded far below it): sizes
 * and offsets then fit an int. */
#define MAX_SIDE 65536

/* Where each output sample of one axis draws from: the first source sample and ``taps``
 * weights for it and the samples after it (the same count for every output sample: the
 * window is shifted inside the plane at its edges, the weights of samples beyond the edge
 * folded onto the edge sample). */
typedef struct {
    int taps;
    int stride;       /* weights kept per output sample: ``taps`` rounded up to a multiple of 8 */
    int *first;     /* per output sample */
    int16_t *weights; /* per output sample, ``taps`` each */
} Axis;

static void axis_free(Axis *axis)
{
    free(axis->first);
    free(axis->weights);
    axis->first = NULL;
    axis->weights = NULL;
}

/* The weights of ``outputs`` samples from ``inputs`` along one axis: output sample j is centred
 * on source coordinate ``origin + j * step`` (in source samples, 0 the centre of the first).
 * 0 on success, -1 when memory ran out or the reduction is beyond MAX_TAPS. */
static int axis_make(Axis *axis, int inputs, int outputs, double origin, double step)
{
    double stretch = step > 1.0 ? step : 1.0; /* the kernel widens only for a reduction */
    double reach = LOBES * stretch;
    int taps = (int)ceil(2.0 * reach) + 1;
    if (taps > inputs)
        taps = inputs;
    if (taps > MAX_TAPS)
        return -1;
    axis->taps = taps;
    axis->stride = (taps + 7) & ~7;
    axis->first = malloc(sizeof(int) * (size_t)outputs);
    axis->weights = calloc((size_t)outputs * (size_t)axis->stride, sizeof(int16_t));
    if (axis->first == NULL || axis->weights == NULL) {
        axis_free(axis);
        return -1;
    }
    double raw[MAX_TAPS];
    for (int j = 0; j < outputs; j++) {
        double centre = origin + j * step;
        int low = (int)floor(centre - reach) + 1; /* the kernel is zero at +-reach */
        int high = (int)ceil(centre + reach) - 1;
        int first = low;
        if (first > inputs - taps)
            first = inputs - taps;
        if (first < 0)
            first = 0;
        memset(raw, 0, sizeof(double) * (size_t)taps);
        double total = 0.0;
        /* lanczos3(u) = 3 sin(pi u) sin(pi u / 3) / (pi u)^2 at u = (i - centre) / stretch: both
         * sines advance by a fixed angle from one sample to the next, so they are rotated
         * forward rather than computed again (two sine calls a tap were a sixth of the work). */
        double angle = M_PI * (low - centre) / stretch, turn = M_PI / stretch;
        double s1 = sin(angle), c1 = cos(angle), s3 = sin(angle / LOBES), c3 = cos(angle / LOBES);
        double sin_turn = sin(turn), cos_turn = cos(turn), sin_turn3 = sin(turn / LOBES), cos_turn3 = cos(turn / LOBES);
        for (int i = low; i <= high; i++) {
            double px = M_PI * (i - centre) / stretch;
            double w = fabs(px) < 1e-9 ? 1.0 : (fabs(px) >= M_PI * LOBES ? 0.0 : LOBES * s1 * s3 / (px * px));
            double next1 = s1 * cos_turn + c1 * sin_turn, next3 = s3 * cos_turn3 + c3 * sin_turn3;
            c1 = c1 * cos_turn - s1 * sin_turn;
            c3 = c3 * cos_turn3 - s3 * sin_turn3;
            s1 = next1;
            s3 = next3;
            int at = i < 0 ? 0 : (i >= inputs ? inputs - 1 : i); /* the edge sample repeated */
            int slot = at - first;
            if (slot < 0)
                slot = 0; /* cannot happen: ``first`` <= every sample inside the plane */
            if (slot >= taps)
                slot = taps - 1;
            raw[slot] += w;
            total += w;
        }
        int16_t *weights = axis->weights + (size_t)j * (size_t)axis->stride;
        int sum = 0, largest = 0;
        for (int t = 0; t < taps; t++) {
            int w = (int)lrint(raw[t] / total * WEIGHT_ONE);
            weights[t] = (int16_t)w;
            sum += w;
            if (abs(w) > abs(weights[largest]))
                largest = t;
        }
        weights[largest] = (int16_t)(weights[largest] + WEIGHT_ONE - sum); /* sums to exactly one */
        axis->first[j] = first;
    }
    return 0;
}

static inline uint8_t clamped(int32_t acc)
{
    int32_t v = (acc + (WEIGHT_ONE >> 1)) >> WEIGHT_BITS;
    return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Down: each output row from ``down.taps`` source rows, every column at once. With SSE2 (every
 * x86-64), two source rows at a time: their samples interleaved as 16-bit pairs, so that one
 * multiply-add instruction (pmaddwd) weighs four columns of both rows. */
static void pass_down(const uint8_t *src, Py_ssize_t src_stride, int columns, const Axis *down, int rows,
                      uint8_t *dst, Py_ssize_t dst_stride, int32_t *acc)
{
    for (int j = 0; j < rows; j++) {
        const int16_t *weights = down->weights + (size_t)j * (size_t)down->stride;
        const uint8_t *row = src + (Py_ssize_t)down->first[j] * src_stride;
        memset(acc, 0, sizeof(int32_t) * (size_t)columns);
        int t = 0;
#if defined(__SSE2__)
        const __m128i zero = _mm_setzero_si128();
        for (; t + 1 < down->taps; t += 2, row += 2 * src_stride) {
            const uint8_t *next = row + src_stride;
            /* (w_t, w_t+1) in every 32-bit lane */
            __m128i pair = _mm_set1_epi32((int32_t)(((uint32_t)(uint16_t)weights[t + 1] << 16) | (uint16_t)weights[t]));
            int x = 0;
            for (; x + 16 <= columns; x += 16) {
                __m128i a = _mm_loadu_si128((const __m128i *)(row + x));
                __m128i b = _mm_loadu_si128((const __m128i *)(next + x));
                __m128i low = _mm_unpacklo_epi8(a, b), high = _mm_unpackhi_epi8(a, b); /* a0 b0 a1 b1 ... */
                __m128i *at = (__m128i *)(acc + x);
                _mm_storeu_si128(at, _mm_add_epi32(_mm_loadu_si128(at), _mm_madd_epi16(_mm_unpacklo_epi8(low, zero), pair)));
                _mm_storeu_si128(at + 1, _mm_add_epi32(_mm_loadu_si128(at + 1), _mm_madd_epi16(_mm_unpackhi_epi8(low, zero), pair)));
                _mm_storeu_si128(at + 2, _mm_add_epi32(_mm_loadu_si128(at + 2), _mm_madd_epi16(_mm_unpacklo_epi8(high, zero), pair)));
                _mm_storeu_si128(at + 3, _mm_add_epi32(_mm_loadu_si128(at + 3), _mm_madd_epi16(_mm_unpackhi_epi8(high, zero), pair)));
            }
            for (; x < columns; x++)
                acc[x] += weights[t] * row[x] + weights[t + 1] * next[x];
        }
#endif
        for (; t < down->taps; t++, row += src_stride) {
            int32_t w = weights[t];
            for (int x = 0; x < columns; x++)
                acc[x] += w * row[x];
        }
        uint8_t *out = dst + (Py_ssize_t)j * dst_stride;
        for (int x = 0; x < columns; x++)
            out[x] = clamped(acc[x]);
    }
}

/* Across: each output sample of a row from its window of neighbours in the row. The weights
 * of an output sample are padded with zeros to ``across.stride`` (a multiple of 8), so that a
 * window is whole groups of eight: one multiply-add of eight samples each with SSE2, four
 * output samples summed and clamped together. The source rows must be readable ``stride``
 * samples past their last window's start. */
static inline int32_t window_sum(const int16_t *weights, const uint8_t *from, int stride)
{
    int32_t acc = 0;
    for (int t = 0; t < stride; t++)
        acc += (int32_t)weights[t] * (int32_t)from[t];
    return acc;
}

#if defined(__SSE2__)
/* The four lanes' partial sums of one window's multiply-adds */
static inline __m128i window_sums(const int16_t *weights, const uint8_t *from, int stride)
{
    const __m128i zero = _mm_setzero_si128();
    __m128i sums = _mm_setzero_si128();
    for (int t = 0; t < stride; t += 8) {
        __m128i samples = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i *)(from + t)), zero);
        sums = _mm_add_epi32(sums, _mm_madd_epi16(samples, _mm_loadu_si128((const __m128i *)(weights + t))));
    }
    return sums;
}
#endif

static void pass_across(const uint8_t *src, Py_ssize_t src_stride, int rows, const Axis *across, int columns,
                        uint8_t *dst, Py_ssize_t dst_stride)
{
    int stride = across->stride;
    for (int y = 0; y < rows; y++) {
        const uint8_t *row = src + (Py_ssize_t)y * src_stride;
        uint8_t *out = dst + (Py_ssize_t)y * dst_stride;
        const int16_t *weights = across->weights;
        const int *first = across->first;
        int i = 0;
#if defined(__SSE2__)
        const __m128i half = _mm_set1_epi32(WEIGHT_ONE >> 1);
        for (; i + 4 <= columns; i += 4, weights += 4 * stride) {
            __m128i s0 = window_sums(weights, row + first[i], stride);
            __m128i s1 = window_sums(weights + stride, row + first[i + 1], stride);
            __m128i s2 = window_sums(weights + 2 * stride, row + first[i + 2], stride);
            __m128i s3 = window_sums(weights + 3 * stride, row + first[i + 3], stride);
            /* a 4 x 4 transpose-and-add: lane k of ``total`` is the sum of s_k's four lanes */
            __m128i t01 = _mm_add_epi32(_mm_unpacklo_epi32(s0, s1), _mm_unpackhi_epi32(s0, s1));
            __m128i t23 = _mm_add_epi32(_mm_unpacklo_epi32(s2, s3), _mm_unpackhi_epi32(s2, s3));
            __m128i total = _mm_add_epi32(_mm_unpacklo_epi64(t01, t23), _mm_unpackhi_epi64(t01, t23));
            total = _mm_srai_epi32(_mm_add_epi32(total, half), WEIGHT_BITS);
            __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(total, total), _mm_setzero_si128());
            int32_t four = _mm_cvtsi128_si32(bytes);
            memcpy(out + i, &four, 4);
        }
#endif
        for (; i < columns; i++, weights += stride)
            out[i] = clamped(window_sum(weights, row + first[i], stride));
    }
}

/* A view of ``obj`` as rows of bytes, each row contiguous (``flags``: PyBUF_WRITABLE for a target). */
static int plane_view(PyObject *obj, Py_buffer *view, int flags, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_STRIDES | flags) < 0)
        return -1;
    if (view->ndim != 2 || view->itemsize != 1 || view->strides[1] != 1 || view->strides[0] < view->shape[1]) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: a 2-D array of bytes with contiguous rows is needed", name);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(resample_doc,
             "resample(source, target, x_origin, x_step, y_origin, y_step)\n\n"
             "Fill ``target`` (rows x columns of uint8) with ``source`` resampled by lanczos3: target\n"
             "sample (i, j) is centred on source coordinates (y_origin + i * y_step, x_origin + j * x_step),\n"
             "in source samples, 0 the centre of the first. A step above 1 is a reduction and widens\n"
             "the kernel by it. ValueError for arrays of the wrong kind or a reduction beyond 64.");

static PyObject *resample(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *source_obj, *target_obj;
    double x_origin, x_step, y_origin, y_step;
    if (!PyArg_ParseTuple(args, "OOdddd", &source_obj, &target_obj, &x_origin, &x_step, &y_origin, &y_step))
        return NULL;
    if (!(x_step > 0.0 && x_step <= 64.0 && y_step > 0.0 && y_step <= 64.0) || !isfinite(x_origin) ||
        !isfinite(y_origin)) {
        PyErr_SetString(PyExc_ValueError, "steps must lie in (0, 64] and origins be finite");
        return NULL;
    }
    Py_buffer source, target;
    if (plane_view(source_obj, &source, 0, "source") < 0)
        return NULL;
    if (plane_view(target_obj, &target, PyBUF_WRITABLE, "target") < 0) {
        PyBuffer_Release(&source);
        return NULL;
    }
    int in_rows = (int)source.shape[0], in_columns = (int)source.shape[1];
    int out_rows = (int)target.shape[0], out_columns = (int)target.shape[1];
    PyObject *result = NULL;
    Axis down = {0}, across = {0};
    uint8_t *middle = NULL;
    int32_t *acc = NULL;
    int failed = 0;
    if (in_rows <= 0 || in_columns <= 0 || out_rows <= 0 || out_columns <= 0) {
        PyErr_SetString(PyExc_ValueError, "empty planes");
        goto done;
    }
    if (source.shape[0] > MAX_SIDE || source.shape[1] > MAX_SIDE || target.shape[0] > MAX_SIDE ||
        target.shape[1] > MAX_SIDE) {
        PyErr_SetString(PyExc_ValueError, "planes of more than 65536 samples a side");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    failed = axis_make(&down, in_rows, out_rows, y_origin, y_step) < 0 ||
             axis_make(&across, in_columns, out_columns, x_origin, x_step) < 0;
    if (!failed) {
        /* pass_across reads up to ``stride`` samples from a row's last window start */
        middle = malloc((size_t)out_rows * (size_t)in_columns + (size_t)across.stride);
        acc = malloc(sizeof(int32_t) * (size_t)in_columns);
        failed = middle == NULL || acc == NULL;
        if (!failed) /* read (times a zero weight) past the last row: defined bytes */
            memset(middle + (size_t)out_rows * (size_t)in_columns, 0, (size_t)across.stride);
    }
    if (!failed) {
        pass_down(source.buf, source.strides[0], in_columns, &down, out_rows, middle, in_columns, acc);
        pass_across(middle, in_columns, out_rows, &across, out_columns, target.buf, target.strides[0]);
    }
    free(acc);
    free(middle);
    axis_free(&down);
    axis_free(&across);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetString(PyExc_MemoryError, "resample: out of memory");
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&source);
    PyBuffer_Release(&target);
    return result;
}

static PyMethodDef methods[] = {
    {"resample", resample, METH_VARARGS, resample_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_lanczos", "Lanczos3 resampling of 8-bit planes.", -1, methods,
};

PyMODINIT_FUNC PyInit__lanczos(void)
{
    return PyModule_Create(&module);
}
