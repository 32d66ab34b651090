#include <dnnl.h>
// Debian's oneDNN runs on GNU OpenMP; its thread count is OpenMP's (omp.h is gcc's, not on clang's path).
void omp_set_num_threads(int count);
