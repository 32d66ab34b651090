#include <dnnl.h>
// Debian's oneDNN runs on GNU OpenMP; its thread count is OpenMP's (omp.h is gcc's, not on clang's path).
void omp_set_num_threads(int count);
int omp_get_thread_num(void);
int omp_in_parallel(void);
// The entry point `#pragma omp parallel num_threads(n)` compiles to (libgomp's stable ABI since GCC 4.9): the
// kernels' own loops (LatheTensors' Parallel) run on the same threads as oneDNN's products.
void GOMP_parallel(void (*body)(void *context), void *context, unsigned threads, unsigned flags);
