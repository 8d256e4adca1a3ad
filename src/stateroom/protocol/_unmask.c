/*
 * Unmasking client frames (RFC 6455 section 5.3), the one byte loop on the hot path.
 *
 * Why our own C: websockets' apply_mask parses its arguments with
 * PyArg_ParseTupleAndKeywords (about 400 instructions and 30 cache lines of
 * argument-parsing code per call, more than the XOR itself). These take
 * positional arguments only (METH_FASTCALL / METH_O), and unmask_text() turns
 * a whole small text frame into a str without the intermediate bytes objects.
 * The pure-Python fallback is in frames.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* dst[i] = src[i] ^ mask[i % 4], eight bytes at a time (the compiler vectorises it) */
static void xor_mask(char *dst, const char *src, Py_ssize_t n, const unsigned char mask[4]) {
    uint32_t m32;
    memcpy(&m32, mask, 4);
    uint64_t m64 = ((uint64_t)m32 << 32) | m32;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= m64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = (char)(src[i] ^ mask[i & 3]);
}

PyDoc_STRVAR(unmask_doc,
             "unmask(data, mask, /) -> bytes\n\n"
             "XOR data (any bytes-like object) with the repeating 4-byte mask.");

static PyObject *unmask(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "unmask() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_buffer data, mask;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *out = NULL;
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
    } else {
        out = PyBytes_FromStringAndSize(NULL, data.len);
        if (out != NULL)
            xor_mask(PyBytes_AS_STRING(out), data.buf, data.len, mask.buf);
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return out;
}

PyDoc_STRVAR(unmask_text_doc,
             "unmask_text(frame, /) -> str | None\n\n"
             "The text of one whole masked frame with a 7-bit length (2-byte header,\n"
             "4-byte mask, under 126 bytes of payload), or None if it is not UTF-8.\n"
             "The caller has checked the header.");

static PyObject *unmask_text(PyObject *module, PyObject *frame) {
    (void)module;
    if (!PyBytes_CheckExact(frame)) {
        PyErr_SetString(PyExc_TypeError, "unmask_text() takes bytes");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(frame) - 6;
    if (n < 0 || n > 125) {
        PyErr_SetString(PyExc_ValueError, "not a small masked frame");
        return NULL;
    }
    const char *raw = PyBytes_AS_STRING(frame);
    char text[128];
    xor_mask(text, raw + 6, n, (const unsigned char *)raw + 2);
    PyObject *out = PyUnicode_DecodeUTF8(text, n, NULL);
    if (out == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear(); /* the general path closes the connection with 1007 */
        Py_RETURN_NONE;
    }
    return out;
}

static PyMethodDef methods[] = {
    {"unmask", (PyCFunction)(void (*)(void))unmask, METH_FASTCALL, unmask_doc},
    {"unmask_text", unmask_text, METH_O, unmask_text_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "stateroom.protocol._unmask", NULL, 0, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__unmask(void) { return PyModule_Create(&module); }
