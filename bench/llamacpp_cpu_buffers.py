"""Imported before loading a model with llama-cpp-python: on AMX CPUs llama.cpp 0.3.36's AMX weight repacking (an
"extra buffer type") dies with SIGILL at its first tileloadd on this project's guests (built here with -march=native),
so there the weights stay in ggml's plain CPU buffers (use_extra_bufts = false): llama.cpp's AVX512/VNNI dot products,
as on the other CPU kinds. `EXTRA_BUFFERS` says whether they are used."""
import llama_cpp.llama_cpp as llama_cpp_api

EXTRA_BUFFERS = "amx_tile" not in open("/proc/cpuinfo").read()

if not EXTRA_BUFFERS:
    default_params = llama_cpp_api.llama_model_default_params

    def params_without_extra_buffers():
        params = default_params()
        params.use_extra_bufts = False
        return params

    llama_cpp_api.llama_model_default_params = params_without_extra_buffers
