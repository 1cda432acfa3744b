"""Binary extension modules: ABI-tagged discovery and reload of a rebuilt .so in one process."""

from __future__ import annotations

import asyncio
import importlib.machinery
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from shellsvc.runtime import PluginLoadError, PluginState, ReloadError, Runtime, extension_module_name

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")  # e.g. .cpython-311-x86_64-linux-gnu.so

C_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static long calls = 0;

static PyObject *version(PyObject *self, PyObject *args) {
    calls++;
    return PyLong_FromLong(VERSION);
}

static PyObject *call_count(PyObject *self, PyObject *args) {
    return PyLong_FromLong(calls);
}

static PyMethodDef methods[] = {
    {"version", version, METH_NOARGS, "Build version."},
    {"call_count", call_count, METH_NOARGS, "Calls of version() in this generation."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "fastmath", NULL, -1, methods};

PyMODINIT_FUNC PyInit_fastmath(void) { return PyModule_Create(&module); }
"""


#: The same with multi-phase initialisation (PEP 489), which CPython does not cache by path.
MULTI_PHASE_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *version(PyObject *self, PyObject *args) { return PyLong_FromLong(VERSION); }

static PyMethodDef methods[] = {{"version", version, METH_NOARGS, "Build version."}, {NULL, NULL, 0, NULL}};
static PyModuleDef_Slot slots[] = {{0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "phased", NULL, 0, methods, slots};

PyMODINIT_FUNC PyInit_phased(void) { return PyModuleDef_Init(&module); }
"""


def build_extension(
    directory: Path, version: int, filename: str = f"fastmath{EXT_SUFFIX}", c_source: str = C_SOURCE
) -> Path:
    """Compile the tiny extension with gcc into ``directory/filename`` (overwriting in place)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    source = directory / f"{filename.partition('.')[0]}.c"
    source.write_text(c_source)
    output = directory / filename
    build = directory / f".build-{version}.so"
    command = [
        compiler, "-shared", "-fPIC", "-O0", f"-DVERSION={version}",
        f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(build),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    shutil.copyfile(build, output)  # in place, as `cp` or a build tool would overwrite it
    build.unlink()
    return output


def test_extension_names_map_abi_tagged_files_to_module_names():
    assert extension_module_name("fastmath.cpython-311-x86_64-linux-gnu.so") == "fastmath"
    assert extension_module_name(f"fastmath{EXT_SUFFIX}") == "fastmath"
    assert extension_module_name("fastmath.abi3.so") == ("fastmath" if ".abi3.so" in importlib.machinery.EXTENSION_SUFFIXES else None)
    assert extension_module_name("fastmath.so") == "fastmath"
    assert extension_module_name("fastmath.py") is None
    assert extension_module_name("not-an-identifier.so") is None


async def test_rebuilt_extension_reloads_from_v1_to_v2_in_one_process(tmp_path):
    ext = build_extension(tmp_path, 1)
    (tmp_path / "plain.py").write_text("X = 1  # not a plugin\n")
    async with Runtime() as runtime:
        [handle] = await runtime.load_binary(tmp_path, names=["fastmath"])
        assert handle.name == "fastmath" and handle.kind == "extension" and handle.path == ext.resolve()
        assert handle.state is PluginState.LOADED
        v1 = runtime["fastmath"]
        assert v1.version() == 1 and v1.call_count() == 1
        assert sys.modules[handle.module] is v1 and handle.module.endswith(".fastmath")
        assert "fastmath" not in sys.modules
        sha_v1 = handle.sha256

        build_extension(tmp_path, 2)  # overwrite the loaded file in place: must not crash us
        [same] = await runtime.reload("fastmath")
        v2 = runtime["fastmath"]
        assert same is handle and handle.generation == 2 and handle.sha256 != sha_v1
        assert v2 is not v1 and v2.version() == 2
        assert v2.call_count() == 1  # C globals are per generation
        assert v1.version() == 1  # the old generation stays mapped and usable
        assert sys.modules[handle.module] is v2

        # A corrupt build fails to load: the old generation keeps serving.
        ext.write_bytes(b"\x7fELF but not really")
        with pytest.raises(ReloadError, match="previous version keeps serving") as info:
            await runtime.reload("fastmath")
        assert info.value.file == str(ext.resolve()) and runtime["fastmath"] is v2 and v2.version() == 2

        await runtime.unload("fastmath")
        assert handle.module not in sys.modules and "fastmath" not in runtime


async def test_directory_load_includes_extensions_and_selects_by_name(tmp_path):
    build_extension(tmp_path, 7)
    (tmp_path / "svc.py").write_text("from shellsvc import Plugin\nclass Svc(Plugin): pass\n")
    async with Runtime() as runtime:
        assert [h.name for h in await runtime.load(tmp_path, names=["svc"])] == ["svc"]
        await runtime.load(tmp_path)
        assert sorted(runtime) == ["fastmath", "svc"] and runtime["fastmath"].version() == 7
        with pytest.raises(PluginLoadError, match="not a binary extension module"):
            await runtime.load_binary(tmp_path / "svc.py")


async def test_watcher_reloads_a_rebuilt_extension(tmp_path):
    build_extension(tmp_path, 1)
    async with Runtime() as runtime:
        await runtime.load_binary(tmp_path)
        watcher = runtime.watch(tmp_path, interval=0.05, debounce=0.1)
        build_extension(tmp_path, 2)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while runtime["fastmath"].version() != 2 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert runtime["fastmath"].version() == 2
        await watcher.stop()


async def test_multi_phase_extension_reloads_too(tmp_path):
    filename = f"phased{EXT_SUFFIX}"
    ext = build_extension(tmp_path, 1, filename, MULTI_PHASE_SOURCE)
    async with Runtime() as runtime:
        [handle] = await runtime.load(ext)
        v1 = runtime["phased"]
        assert handle.name == "phased" and v1.version() == 1
        build_extension(tmp_path, 2, filename, MULTI_PHASE_SOURCE)
        await runtime.reload("phased")
        assert runtime["phased"].version() == 2 and v1.version() == 1 and handle.generation == 2
