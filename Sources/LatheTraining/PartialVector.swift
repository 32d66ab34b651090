/// The vector the optimizer kernels work in, 16 floats; `loadLanes`/`storeLanes` (LatheTensors) load and store
/// it over the partial vector at a tensor's end.
typealias OptimizerVector = SIMD16<Float>
