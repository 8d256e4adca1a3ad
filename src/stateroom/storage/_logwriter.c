/* The commit log's writer thread, in C so that it never takes the GIL.
 *
 * Why C: a Python writer thread must re-take the GIL after every write() and
 * fdatasync(), and the event loop's thread then waits for it on its own next
 * GIL hand-off (every SQLite call releases the GIL): measured, that cost the
 * loop a third of its write throughput. This thread only touches C memory.
 *
 * append(bytes) copies the record into the pending buffer under a mutex and
 * returns the log position after it. The thread swaps buffers, writes them to
 * the segment fd, fdatasync()s, publishes `durable`, and writes 1 to an eventfd
 * the event loop watches. rotate(fd) makes the thread continue in a new segment
 * at the current position (it syncs and closes the old one first). A write
 * error stops the log for good: `error` holds errno; nothing after it is durable.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    PyObject_HEAD
    int fd;
    int event_fd;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;          /* pending bytes, appended by the loop's thread */
    size_t len, cap;
    uint64_t appended;  /* position after the last appended byte */
    uint64_t buf_start; /* position of buf[0] */
    int next_fd;        /* a segment to continue in, from rotate_at on */
    uint64_t rotate_at;
    int stopping;
    int idle;           /* the thread waits for work: an append must wake it */
    uint64_t durable;   /* position before which everything is synced */
    int error;          /* errno of the failure that stopped the log, or 0 */
} Writer;

static int write_all(int fd, const char *data, size_t n) {
    while (n) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

static void signal_loop(Writer *self) {
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(self->event_fd, &one, sizeof one);
    } while (r < 0 && errno == EINTR);
}

static void *run(void *arg) {
    Writer *self = (Writer *)arg;
    char *spare = NULL;
    size_t spare_cap = 0;
    for (;;) {
        pthread_mutex_lock(&self->mu);
        while (self->len == 0 && !self->stopping && self->next_fd < 0) {
            self->idle = 1;
            pthread_cond_wait(&self->cv, &self->mu);
        }
        self->idle = 0;
        if (self->len == 0 && self->stopping && self->next_fd < 0) {
            pthread_mutex_unlock(&self->mu);
            break;
        }
        char *data = self->buf;
        size_t data_cap = self->cap;
        size_t n = self->len;
        uint64_t start = self->buf_start;
        self->buf = spare;
        self->cap = spare_cap;
        self->len = 0;
        self->buf_start = start + n;
        int next_fd = self->next_fd;
        uint64_t rotate_at = self->rotate_at;
        self->next_fd = -1;
        int failed = self->error;
        pthread_mutex_unlock(&self->mu);

        int err = failed;
        if (!err) {
            size_t head = n;
            if (next_fd >= 0 && rotate_at >= start && rotate_at - start < n)
                head = (size_t)(rotate_at - start);
            err = write_all(self->fd, data, head);
            if (!err && fdatasync(self->fd) != 0) err = errno;
            if (!err && next_fd >= 0) {
                close(self->fd);
                self->fd = next_fd;
                next_fd = -1;
                err = write_all(self->fd, data + head, n - head);
                if (!err && n > head && fdatasync(self->fd) != 0) err = errno;
            }
        }
        if (next_fd >= 0) close(next_fd);
        spare = data; /* reused for the next swap */
        spare_cap = data_cap;
        pthread_mutex_lock(&self->mu);
        if (err) {
            if (!self->error) self->error = err;
        } else {
            __atomic_store_n(&self->durable, start + n, __ATOMIC_RELEASE);
        }
        pthread_mutex_unlock(&self->mu);
        signal_loop(self);
    }
    free(spare);
    return NULL;
}

static int Writer_init(Writer *self, PyObject *args, PyObject *kwds) {
    int fd, event_fd;
    unsigned long long position;
    static char *kwlist[] = {"fd", "event_fd", "position", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiK", kwlist, &fd, &event_fd, &position))
        return -1;
    if (self->started) {
        PyErr_SetString(PyExc_RuntimeError, "Writer already started");
        return -1;
    }
    self->fd = fd;
    self->event_fd = event_fd;
    self->appended = self->buf_start = self->durable = position;
    self->next_fd = -1;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    int rc = pthread_create(&self->thread, NULL, run, self);
    if (rc) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->started = 1;
    return 0;
}

static PyObject *Writer_append(Writer *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    pthread_mutex_lock(&self->mu);
    if (self->stopping) {
        pthread_mutex_unlock(&self->mu);
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "the commit log is closed");
        return NULL;
    }
    if (self->len + (size_t)view.len > self->cap) {
        size_t cap = self->cap ? self->cap : 65536;
        while (cap < self->len + (size_t)view.len) cap *= 2;
        char *grown = realloc(self->buf, cap);
        if (!grown) {
            pthread_mutex_unlock(&self->mu);
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        self->buf = grown;
        self->cap = cap;
    }
    memcpy(self->buf + self->len, view.buf, (size_t)view.len);
    self->len += (size_t)view.len;
    self->appended += (uint64_t)view.len;
    uint64_t end = self->appended;
    /* Only an idle thread needs waking (a futex call); a busy one takes this
       record with the next group when its sync returns. */
    if (self->idle) pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(end);
}

static PyObject *Writer_rotate(Writer *self, PyObject *arg) {
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    pthread_mutex_lock(&self->mu);
    if (self->next_fd >= 0) {
        pthread_mutex_unlock(&self->mu);
        PyErr_SetString(PyExc_RuntimeError, "a rotation is already pending");
        return NULL;
    }
    self->next_fd = fd;
    self->rotate_at = self->appended;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    return PyLong_FromUnsignedLongLong(self->rotate_at);
}

static PyObject *Writer_state(Writer *self, PyObject *Py_UNUSED(ignored)) {
    /* (durable, error): read together, under the mutex */
    pthread_mutex_lock(&self->mu);
    uint64_t durable = self->durable;
    int error = self->error;
    int pending_rotation = self->next_fd >= 0;
    pthread_mutex_unlock(&self->mu);
    return Py_BuildValue("KiO", (unsigned long long)durable, error,
                         pending_rotation ? Py_True : Py_False);
}

static PyObject *Writer_close(Writer *self, PyObject *Py_UNUSED(ignored)) {
    if (!self->started) Py_RETURN_NONE;
    pthread_mutex_lock(&self->mu);
    self->stopping = 1;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS
    self->started = 0;
    Py_RETURN_NONE;
}

static void Writer_dealloc(Writer *self) {
    if (self->started) {
        pthread_mutex_lock(&self->mu);
        self->stopping = 1;
        pthread_cond_signal(&self->cv);
        pthread_mutex_unlock(&self->mu);
        pthread_join(self->thread, NULL);
    }
    free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Writer_get_appended(Writer *self, void *closure) {
    pthread_mutex_lock(&self->mu);
    uint64_t value = self->appended;
    pthread_mutex_unlock(&self->mu);
    return PyLong_FromUnsignedLongLong(value);
}

static PyObject *Writer_get_fd(Writer *self, void *closure) {
    return PyLong_FromLong(self->fd);
}

static PyMethodDef Writer_methods[] = {
    {"append", (PyCFunction)Writer_append, METH_O,
     "Queue bytes for the next flush; returns the log position after them."},
    {"rotate", (PyCFunction)Writer_rotate, METH_O,
     "Continue in the segment fd from the current position (the old fd is closed)."},
    {"state", (PyCFunction)Writer_state, METH_NOARGS,
     "(durable position, errno or 0, whether a rotation is pending)."},
    {"close", (PyCFunction)Writer_close, METH_NOARGS,
     "Flush what is queued and stop the thread."},
    {NULL}};

static PyGetSetDef Writer_getset[] = {
    {"appended", (getter)Writer_get_appended, NULL, "position after the last append", NULL},
    {"fd", (getter)Writer_get_fd, NULL, "the segment fd being written", NULL},
    {NULL}};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stateroom.storage._logwriter.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The commit log's writer thread (see the file's comment).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Writer_init,
    .tp_dealloc = (destructor)Writer_dealloc,
    .tp_methods = Writer_methods,
    .tp_getset = Writer_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_logwriter",
                                    "The commit log's GIL-free writer thread.", -1, NULL};

PyMODINIT_FUNC PyInit__logwriter(void) {
    if (PyType_Ready(&WriterType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&WriterType);
    if (PyModule_AddObject(m, "Writer", (PyObject *)&WriterType) < 0) {
        Py_DECREF(&WriterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
