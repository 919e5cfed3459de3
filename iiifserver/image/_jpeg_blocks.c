/* A crop of a JPEG-tiled pyramid level at its own size, from the stored tiles' DCT blocks.
 *
 * Owns, for the covered tiles of one crop, in one call with the GIL released:
 * - assemble: reading each tile's quantised DCT coefficients (libjpeg's jpeg_read_coefficients),
 *   copying the blocks the crop covers into one image's coefficient arrays, and writing those as
 *   a baseline JPEG (jpeg_write_coefficients);
 * - splice: the same JPEG without decoding the blocks, their coded bits copied;
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
 *
 * Layout: each job is a file of jpeg_blocks/ (common.h: the error manager, the status codes, the
 * job and the quality tables; assemble.c, splice.c, planes.c), included below so that the
 * extension stays one translation unit (setup.py, benchmarks/first_open.py and the install stamp
 * build or hash this file and those); this file holds the Python bindings.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "jpeg_blocks/common.h"

#include "jpeg_blocks/assemble.c"
#include "jpeg_blocks/planes.c"
#include "jpeg_blocks/splice.c"

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
    return call_blocks(args, kwargs, "Oiiiiiiiiii:assemble", run_assemble);
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
