import LatheCLI
#if os(Linux)
import Glibc

// GNU OpenMP, whose threads run oneDNN's products and the kernels' loops, reads OMP_WAIT_POLICY once, when it is
// loaded, before any code here runs (a setenv now would come too late). Its default keeps each thread spinning for
// milliseconds after every parallel region, and on a busy 2-core machine two spinning threads collapse (measured:
// `bench generate --threads 2` 10× slower than one thread; ../shared/MACHINE-NOTES.md). So the process restarts
// itself once with PASSIVE, unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set already (the user's choice stands).
if getenv("OMP_WAIT_POLICY") == nil, getenv("GOMP_SPINCOUNT") == nil {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    // Only reached if the restart failed: carry on with OpenMP's default.
}
#endif
LatheCommand.main()
