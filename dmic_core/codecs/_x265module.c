/*
 * _x265: a minimal CPython binding of libx265 for DMIC Studio.
 *
 * Why a C extension: x265_picture's field offsets change between x265 builds, so binding the
 * struct with ctypes is fragile. Compiling against the installed x265.h gets the layout right;
 * at run time we still check that the library we got is the build this file was compiled for.
 *
 * One job: encode monochrome (4:0:0) frames as a low-delay-P HEVC stream with a forced QP per
 * frame and optional per-16x16-block QP offsets (quantOffsets), or under ABR rate control.
 * The caller (dmic_core/codecs/x265.py) validates inputs and builds the parameter list.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <x265.h>

/* Fetch and check the API table of the requested bit depth; sets a Python error on failure. */
static const x265_api *get_api(int depth)
{
    const x265_api *api = x265_api_get(depth);
    if (!api) {
        PyErr_Format(PyExc_RuntimeError,
                     "libx265 (build %d) has no %d-bit encoder on this machine", X265_BUILD, depth);
        return NULL;
    }
    if (api->api_major_version != X265_MAJOR_VERSION || api->api_build_number != X265_BUILD) {
        PyErr_Format(PyExc_RuntimeError,
                     "libx265 API mismatch: compiled against build %d (major %d), library reports "
                     "build %d (major %d); rebuild dmic_core.codecs._x265",
                     X265_BUILD, X265_MAJOR_VERSION, api->api_build_number, api->api_major_version);
        return NULL;
    }
    if (api->sizeof_param != (int)sizeof(x265_param) ||
        api->sizeof_picture != (int)sizeof(x265_picture) ||
        api->sizeof_frame_stats != (int)sizeof(x265_frame_stats)) {
        PyErr_Format(PyExc_RuntimeError,
                     "libx265 struct size mismatch (param %d/%d, picture %d/%d, frame_stats %d/%d "
                     "library/header); rebuild dmic_core.codecs._x265",
                     api->sizeof_param, (int)sizeof(x265_param), api->sizeof_picture,
                     (int)sizeof(x265_picture), api->sizeof_frame_stats,
                     (int)sizeof(x265_frame_stats));
        return NULL;
    }
    if (depth != 0 && api->bit_depth != depth) {
        PyErr_Format(PyExc_RuntimeError, "libx265 returned a %d-bit API for a %d-bit request",
                     api->bit_depth, depth);
        return NULL;
    }
    return api;
}

PyDoc_STRVAR(info_doc,
"info(depth) -> dict\n\n"
"Version, build number and bit depth of the libx265 API for ``depth`` (8, 10, 12; 0 = default).\n"
"Raises RuntimeError when that API is missing or does not match the compiled header.");

static PyObject *x265_info(PyObject *self, PyObject *args)
{
    int depth = 0;
    if (!PyArg_ParseTuple(args, "|i", &depth))
        return NULL;
    const x265_api *api = get_api(depth);
    if (!api)
        return NULL;
    return Py_BuildValue("{s:i,s:i,s:i,s:s,s:s}", "build", api->api_build_number,
                         "header_build", X265_BUILD, "bit_depth", api->bit_depth, "version",
                         api->version_str ? api->version_str : "",
                         "build_info", api->build_info_str ? api->build_info_str : "");
}

/* Everything that must be released, in one place, so every error path frees it all. */
typedef struct {
    const x265_api *api;
    x265_param *param;
    x265_param *readback;
    x265_encoder *enc;
    x265_picture *pic_in;
    x265_picture *pic_out;
    int *qps;
    Py_buffer frames;
    Py_buffer offsets;
    int have_frames, have_offsets;
} EncState;

static void state_free(EncState *s)
{
    if (s->api) {
        if (s->enc) {
            Py_BEGIN_ALLOW_THREADS
            s->api->encoder_close(s->enc);
            Py_END_ALLOW_THREADS
        }
        if (s->pic_in)
            s->api->picture_free(s->pic_in);
        if (s->pic_out)
            s->api->picture_free(s->pic_out);
        if (s->param)
            s->api->param_free(s->param);
        if (s->readback)
            s->api->param_free(s->readback);
    }
    PyMem_Free(s->qps);
    if (s->have_frames)
        PyBuffer_Release(&s->frames);
    if (s->have_offsets)
        PyBuffer_Release(&s->offsets);
}

static int parse_one(EncState *s, const char *key, const char *value)
{
    int rc = s->api->param_parse(s->param, key, value);
    if (rc == 0)
        return 0;
    PyErr_Format(PyExc_ValueError, "x265 rejected parameter %s=%s (%s)", key, value,
                 rc == X265_PARAM_BAD_NAME ? "unknown name" : "bad value");
    return -1;
}

static PyObject *nals_to_bytes(x265_nal *nals, uint32_t n)
{
    Py_ssize_t size = 0;
    for (uint32_t i = 0; i < n; i++)
        size += nals[i].sizeBytes;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (!out)
        return NULL;
    char *dst = PyBytes_AS_STRING(out);
    for (uint32_t i = 0; i < n; i++) {
        memcpy(dst, nals[i].payload, nals[i].sizeBytes);
        dst += nals[i].sizeBytes;
    }
    return out;
}

/* Store one output picture's NALs, stats and reconstruction at its POC. */
static int collect(EncState *s, x265_nal *nals, uint32_t nnal, int n_frames, int width,
                   int height, int bps, PyObject *frame_list, PyObject *bits_list,
                   PyObject *qp_list, PyObject *type_list, char *recon, int *have_recon)
{
    x265_picture *po = s->pic_out;
    int poc = po->poc;
    if (poc < 0 || poc >= n_frames || PyList_GET_ITEM(frame_list, poc) != Py_None) {
        PyErr_Format(PyExc_RuntimeError, "x265 returned an unexpected picture (POC %d)", poc);
        return -1;
    }
    PyObject *data = nals_to_bytes(nals, nnal);
    if (!data)
        return -1;
    PyObject *old = PyList_GET_ITEM(frame_list, poc);
    PyList_SET_ITEM(frame_list, poc, data);
    Py_DECREF(old);

    PyObject *v = PyLong_FromUnsignedLongLong((unsigned long long)po->frameData.bits);
    if (!v)
        return -1;
    old = PyList_GET_ITEM(bits_list, poc);
    PyList_SET_ITEM(bits_list, poc, v);
    Py_DECREF(old);

    v = PyFloat_FromDouble(po->frameData.qp);
    if (!v)
        return -1;
    old = PyList_GET_ITEM(qp_list, poc);
    PyList_SET_ITEM(qp_list, poc, v);
    Py_DECREF(old);

    char st = po->frameData.sliceType ? po->frameData.sliceType : '?';
    v = PyUnicode_FromStringAndSize(&st, 1);
    if (!v)
        return -1;
    old = PyList_GET_ITEM(type_list, poc);
    PyList_SET_ITEM(type_list, poc, v);
    Py_DECREF(old);

    /* The output picture points into the encoder's reconstructed frame (luma plane only here). */
    if (po->planes[0] && po->stride[0] >= width * bps) {
        const char *src = (const char *)po->planes[0];
        char *dst = recon + (size_t)poc * width * height * bps;
        for (int y = 0; y < height; y++)
            memcpy(dst + (size_t)y * width * bps, src + (size_t)y * po->stride[0],
                   (size_t)width * bps);
    } else {
        *have_recon = 0;
    }
    return 0;
}

PyDoc_STRVAR(encode_doc,
"encode(depth, width, height, n_frames, frames, qps, offsets, preset, params, bitrate_kbps,\n"
"       progress=None) -> dict\n\n"
"Encode 4:0:0 frames as low-delay-P HEVC.\n\n"
"frames: buffer of n_frames*height*width samples, uint8 for depth 8 else uint16 (native order).\n"
"qps: sequence of n_frames coded QPs (0..51) forced per frame, or None for ABR at bitrate_kbps\n"
"(25 fps). offsets: buffer of float32 QP offsets, one per 16x16 block per frame in raster order,\n"
"or None. params: list of (key, value) str pairs applied with x265_param_parse after DMIC's fixed\n"
"settings. progress(done, total) is called after each output frame.\n"
"Returns a dict with 'headers' (bytes), 'frames' (list of bytes, display order), 'bits' (list\n"
"of int, frameData.bits), 'avg_qp' (list of float), 'slice_types' (list of str), 'recon' (bytes\n"
"in the input sample format, or None), 'version' and 'readback' (dict of effective settings).");

static PyObject *x265_encode(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"depth", "width", "height", "n_frames", "frames", "qps", "offsets",
                             "preset", "params", "bitrate_kbps", "progress", NULL};
    int depth, width, height, n_frames;
    PyObject *frames_obj, *qps_obj, *offsets_obj, *params_obj, *progress = Py_None;
    const char *preset;
    double bitrate_kbps;
    EncState s;
    memset(&s, 0, sizeof(s));
    PyObject *frame_list = NULL, *bits_list = NULL, *qp_list = NULL, *type_list = NULL;
    PyObject *recon_obj = NULL, *headers = NULL, *result = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iiiiOOOsOd|O", kwlist, &depth, &width,
                                     &height, &n_frames, &frames_obj, &qps_obj, &offsets_obj,
                                     &preset, &params_obj, &bitrate_kbps, &progress))
        return NULL;
    if (depth != 8 && depth != 10 && depth != 12) {
        PyErr_Format(PyExc_ValueError, "bit depth must be 8, 10 or 12, got %d", depth);
        return NULL;
    }
    if (width <= 0 || height <= 0 || n_frames <= 0 || width % 8 || height % 8) {
        PyErr_Format(PyExc_ValueError, "bad geometry %dx%d x %d frames (need multiples of 8)",
                     width, height, n_frames);
        return NULL;
    }
    if (progress != Py_None && !PyCallable_Check(progress)) {
        PyErr_SetString(PyExc_TypeError, "progress must be callable or None");
        return NULL;
    }
    const int bps = depth > 8 ? 2 : 1;
    const size_t frame_bytes = (size_t)width * height * bps;
    const int blocks_w = (width + 15) / 16, blocks_h = (height + 15) / 16;
    const size_t blocks = (size_t)blocks_w * blocks_h;

    if (PyObject_GetBuffer(frames_obj, &s.frames, PyBUF_SIMPLE) < 0)
        goto fail;
    s.have_frames = 1;
    if ((size_t)s.frames.len != frame_bytes * n_frames) {
        PyErr_Format(PyExc_ValueError, "frames buffer has %zd bytes, expected %zu", s.frames.len,
                     frame_bytes * n_frames);
        goto fail;
    }
    if (offsets_obj != Py_None) {
        if (PyObject_GetBuffer(offsets_obj, &s.offsets, PyBUF_SIMPLE) < 0)
            goto fail;
        s.have_offsets = 1;
        if ((size_t)s.offsets.len != blocks * n_frames * sizeof(float)) {
            PyErr_Format(PyExc_ValueError,
                         "offsets buffer has %zd bytes, expected %zu (float32 per 16x16 block)",
                         s.offsets.len, blocks * n_frames * sizeof(float));
            goto fail;
        }
    }
    if (qps_obj != Py_None) {
        PyObject *seq = PySequence_Fast(qps_obj, "qps must be a sequence of int or None");
        if (!seq)
            goto fail;
        if (PySequence_Fast_GET_SIZE(seq) != n_frames) {
            PyErr_Format(PyExc_ValueError, "got %zd QPs for %d frames",
                         PySequence_Fast_GET_SIZE(seq), n_frames);
            Py_DECREF(seq);
            goto fail;
        }
        s.qps = PyMem_Malloc(sizeof(int) * n_frames);
        if (!s.qps) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            goto fail;
        }
        for (int i = 0; i < n_frames; i++) {
            long q = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
            if (q == -1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                goto fail;
            }
            if (q < 0 || q > 51) {
                PyErr_Format(PyExc_ValueError, "QP %ld of frame %d is outside 0..51", q, i);
                Py_DECREF(seq);
                goto fail;
            }
            s.qps[i] = (int)q;
        }
        Py_DECREF(seq);
    } else if (!(bitrate_kbps > 0)) {
        PyErr_SetString(PyExc_ValueError, "rate control needs a positive bitrate_kbps");
        goto fail;
    }
    if (!PyList_Check(params_obj)) {
        PyErr_SetString(PyExc_TypeError, "params must be a list of (key, value) str pairs");
        goto fail;
    }

    s.api = get_api(depth);
    if (!s.api)
        goto fail;
    s.param = s.api->param_alloc();
    s.readback = s.api->param_alloc();
    s.pic_in = s.api->picture_alloc();
    s.pic_out = s.api->picture_alloc();
    if (!s.param || !s.readback || !s.pic_in || !s.pic_out) {
        PyErr_NoMemory();
        goto fail;
    }
    /* param_alloc returns uninitialised memory and param_free reads its zone fields, so both
     * params must be initialised before any error path can free them. */
    s.api->param_default(s.param);
    s.api->param_default(s.readback);
    if (s.api->param_default_preset(s.param, preset, NULL) < 0) {
        PyErr_Format(PyExc_ValueError, "unknown x265 preset '%s'", preset);
        goto fail;
    }
    s.param->sourceWidth = width;
    s.param->sourceHeight = height;
    s.param->sourceBitDepth = depth;
    s.param->internalBitDepth = depth;
    s.param->internalCsp = X265_CSP_I400;
    s.param->fpsNum = 25;
    s.param->fpsDenom = 1;
    s.param->totalFrames = n_frames;
    s.param->logLevel = X265_LOG_ERROR;

    /* DMIC's fixed settings: see docs/codec.md and the per-CTU QP notes. frame-threads 1 and
     * weightp 0 make the stream a function of the input alone: x265 3.5's weighted-prediction
     * analysis of 4:0:0 pictures reads uninitialised memory (valgrind: "conditional jump depends
     * on uninitialised value" in x265::weightAnalyse), so the same frames coded ten times gave
     * up to 6 different streams (bench/stress_x265_recon.py). CT slices have no fades for
     * weighted prediction to code. */
    {
        char rc_value[64];
        const char *rc_key;
        if (s.qps) {
            rc_key = "crf"; /* any non-CQP mode keeps AQ (and so quantOffsets) alive */
            snprintf(rc_value, sizeof(rc_value), "%s", "28");
        } else {
            rc_key = "bitrate";
            snprintf(rc_value, sizeof(rc_value), "%d", (int)(bitrate_kbps + 0.5) > 0 ?
                     (int)(bitrate_kbps + 0.5) : 1);
        }
        const char *fixed[][2] = {
            {"input-csp", "i400"}, {"bframes", "0"}, {"keyint", "-1"}, {"open-gop", "0"},
            {"scenecut", "0"}, {"ref", "4"}, {"ctu", "64"}, {"qg-size", "64"},
            {"aq-mode", "1"}, {"aq-strength", "0.0001"}, {"cutree", "0"}, {"psy-rd", "0"},
            {"psy-rdoq", "0"}, {"info", "0"}, {"frame-threads", "1"}, {"weightp", "0"},
            {"repeat-headers", "0"},
            {"annexb", "1"}, {"qpmin", "0"}, {"qpmax", "51"}, {rc_key, rc_value},
        };
        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
            if (parse_one(&s, fixed[i][0], fixed[i][1]) < 0)
                goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(params_obj); i++) {
        const char *key, *value;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(params_obj, i), "ss;params items must be (str, str)",
                              &key, &value))
            goto fail;
        if (parse_one(&s, key, value) < 0)
            goto fail;
    }

    Py_BEGIN_ALLOW_THREADS
    s.enc = s.api->encoder_open(s.param);
    Py_END_ALLOW_THREADS
    if (!s.enc) {
        PyErr_SetString(PyExc_RuntimeError,
                        "x265 encoder_open failed (invalid parameter combination)");
        goto fail;
    }
    s.api->encoder_parameters(s.enc, s.readback);
    if (s.have_offsets && s.readback->rc.aqMode == 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "x265 turned adaptive quantisation off, so CTU QP offsets would be ignored "
                        "(constant-QP mode or aq-strength 0 with cutree 0?)");
        goto fail;
    }
    if (s.readback->internalCsp != X265_CSP_I400 || s.readback->bframes != 0 ||
        s.readback->maxCUSize != 64 || s.readback->rc.qgSize != 64) {
        PyErr_Format(PyExc_RuntimeError,
                     "x265 changed DMIC's settings (csp %d, bframes %d, ctu %u, qg-size %u)",
                     s.readback->internalCsp, s.readback->bframes, s.readback->maxCUSize,
                     s.readback->rc.qgSize);
        goto fail;
    }

    x265_nal *nals = NULL;
    uint32_t nnal = 0;
    int rc;
    if (s.api->encoder_headers(s.enc, &nals, &nnal) < 0) {
        PyErr_SetString(PyExc_RuntimeError, "x265 encoder_headers failed");
        goto fail;
    }
    headers = nals_to_bytes(nals, nnal);
    if (!headers)
        goto fail;

    frame_list = PyList_New(n_frames);
    bits_list = PyList_New(n_frames);
    qp_list = PyList_New(n_frames);
    type_list = PyList_New(n_frames);
    recon_obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(frame_bytes * n_frames));
    if (!frame_list || !bits_list || !qp_list || !type_list || !recon_obj)
        goto fail;
    for (int i = 0; i < n_frames; i++) {
        Py_INCREF(Py_None); PyList_SET_ITEM(frame_list, i, Py_None);
        Py_INCREF(Py_None); PyList_SET_ITEM(bits_list, i, Py_None);
        Py_INCREF(Py_None); PyList_SET_ITEM(qp_list, i, Py_None);
        Py_INCREF(Py_None); PyList_SET_ITEM(type_list, i, Py_None);
    }
    char *recon = PyBytes_AS_STRING(recon_obj);
    int have_recon = 1, done = 0;

    s.api->picture_init(s.param, s.pic_in);
    for (int i = 0; i <= n_frames; i++) {
        x265_picture *in = NULL;
        if (i < n_frames) {
            in = s.pic_in;
            in->planes[0] = (char *)s.frames.buf + frame_bytes * i;
            in->stride[0] = width * bps;
            in->bitDepth = depth;
            in->colorSpace = X265_CSP_I400;
            in->pts = i;
            in->sliceType = i == 0 ? X265_TYPE_IDR : X265_TYPE_P;
            in->forceqp = s.qps ? s.qps[i] + 1 : 0;
            in->quantOffsets = s.have_offsets ? (float *)s.offsets.buf + blocks * i : NULL;
        }
        /* Feed one picture (or flush with NULL until the encoder has nothing left). */
        do {
            Py_BEGIN_ALLOW_THREADS
            rc = s.api->encoder_encode(s.enc, &nals, &nnal, in, s.pic_out);
            Py_END_ALLOW_THREADS
            if (rc < 0) {
                PyErr_Format(PyExc_RuntimeError, "x265 encoder_encode failed at frame %d", i);
                goto fail;
            }
            if (rc > 0) {
                if (collect(&s, nals, nnal, n_frames, width, height, bps, frame_list, bits_list,
                            qp_list, type_list, recon, &have_recon) < 0)
                    goto fail;
                done++;
                if (progress != Py_None) {
                    PyObject *r = PyObject_CallFunction(progress, "ii", done, n_frames);
                    if (!r)
                        goto fail;
                    Py_DECREF(r);
                }
            }
        } while (in == NULL && rc > 0);
    }
    if (done != n_frames) {
        PyErr_Format(PyExc_RuntimeError, "x265 returned %d of %d frames", done, n_frames);
        goto fail;
    }
    if (!have_recon) {
        Py_DECREF(recon_obj);
        Py_INCREF(Py_None);
        recon_obj = Py_None;
    }
    {
        const x265_param *p = s.readback;
        result = Py_BuildValue(
            "{s:O,s:O,s:O,s:O,s:O,s:O,s:s,s:{s:i,s:i,s:d,s:i,s:i,s:i,s:i,s:I,s:I,s:i,s:i,s:i,"
            "s:i,s:i,s:i,s:i,s:i}}",
            "headers", headers, "frames", frame_list, "bits", bits_list, "avg_qp", qp_list,
            "slice_types", type_list, "recon", recon_obj, "version",
            s.api->version_str ? s.api->version_str : "", "readback",
            "rc_mode", p->rc.rateControlMode, "aq_mode", p->rc.aqMode,
            "aq_strength", (double)p->rc.aqStrength, "cutree", p->rc.cuTree,
            "bframes", p->bframes, "keyint", p->keyframeMax, "ref", p->maxNumReferences,
            "ctu", p->maxCUSize, "qg_size", p->rc.qgSize, "frame_threads", p->frameNumThreads,
            "internal_bit_depth", p->internalBitDepth, "csp", p->internalCsp,
            "info_sei", p->bEmitInfoSEI, "repeat_headers", p->bRepeatHeaders,
            "annexb", p->bAnnexB, "qp_max", p->rc.qpMax, "weightp", p->bEnableWeightedPred);
    }

fail:
    state_free(&s);
    Py_XDECREF(headers);
    Py_XDECREF(frame_list);
    Py_XDECREF(bits_list);
    Py_XDECREF(qp_list);
    Py_XDECREF(type_list);
    Py_XDECREF(recon_obj);
    return result;
}

static PyMethodDef methods[] = {
    {"info", (PyCFunction)x265_info, METH_VARARGS, info_doc},
    {"encode", (PyCFunction)(void (*)(void))x265_encode, METH_VARARGS | METH_KEYWORDS, encode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_x265",
    "Minimal libx265 binding: 4:0:0 low-delay-P HEVC with forced frame QPs and QP offsets.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__x265(void)
{
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "X265_BUILD", X265_BUILD) < 0 ||
        PyModule_AddIntConstant(m, "X265_MAJOR_VERSION", X265_MAJOR_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
