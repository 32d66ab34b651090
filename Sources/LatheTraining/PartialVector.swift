import LatheTensors

/// The vector the optimizer kernels work in, 16 floats; `loadLanes`/`storeLanes` (LatheTensors) load and store
/// it over the partial vector at a tensor's end.
typealias OptimizerVector = SIMD16<Float>

/// Calls `body(start, count)` on consecutive pieces that cover `count` elements, each a whole number of vectors but
/// the last, a large tensor's pieces shared among the compute threads (`Parallel`): the optimizers update each
/// element on its own, so the split does not change a bit. `floatsPerElement` is what one element reads and writes.
func forEachVectorPiece(count: Int, floatsPerElement: Int, _ body: (_ start: Int, _ count: Int) -> Void) {
    Parallel.forEach(count: count, floatsPerItem: floatsPerElement, alignment: OptimizerVector.scalarCount) { range in
        body(range.lowerBound, range.count)
    }
}
