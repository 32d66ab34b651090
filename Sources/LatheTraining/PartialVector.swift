/// Loads and stores of SIMD16 vectors that may cover fewer than 16 elements at the end of a tensor; the missing
/// lanes read as zero and are not written, so optimizer kernels run one code path over every element.
typealias OptimizerVector = SIMD16<Float>

@inline(__always)
func loadLanes(_ pointer: UnsafePointer<Float>, _ lanes: Int) -> OptimizerVector {
    if lanes == OptimizerVector.scalarCount { return UnsafeRawPointer(pointer).loadUnaligned(as: OptimizerVector.self) }
    var vector = OptimizerVector(repeating: 0)
    for lane in 0..<lanes { vector[lane] = pointer[lane] }
    return vector
}

@inline(__always)
func loadLanes(_ pointer: UnsafeMutablePointer<Float>, _ lanes: Int) -> OptimizerVector {
    loadLanes(UnsafePointer(pointer), lanes)
}

@inline(__always)
func storeLanes(_ vector: OptimizerVector, _ pointer: UnsafeMutablePointer<Float>, _ lanes: Int) {
    if lanes == OptimizerVector.scalarCount {
        UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: OptimizerVector.self)
        return
    }
    for lane in 0..<lanes { pointer[lane] = vector[lane] }
}
