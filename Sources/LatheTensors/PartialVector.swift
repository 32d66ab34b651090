/// Loads and stores of SIMD16 vectors that may cover fewer than 16 elements at the end of a buffer; the missing
/// lanes read as zero and are not written, so element-wise kernels (the optimizers, blockwise quantization) run one
/// code path over every element. Inlinable because LatheTraining's optimizer loops call them once per 16 elements.
@inlinable @inline(__always)
public func loadLanes(_ pointer: UnsafePointer<Float>, _ lanes: Int) -> SIMD16<Float> {
    if lanes == SIMD16<Float>.scalarCount { return UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self) }
    var vector = SIMD16<Float>(repeating: 0)
    for lane in 0..<lanes { vector[lane] = pointer[lane] }
    return vector
}

@inlinable @inline(__always)
public func loadLanes(_ pointer: UnsafeMutablePointer<Float>, _ lanes: Int) -> SIMD16<Float> {
    loadLanes(UnsafePointer(pointer), lanes)
}

@inlinable @inline(__always)
public func storeLanes(_ vector: SIMD16<Float>, _ pointer: UnsafeMutablePointer<Float>, _ lanes: Int) {
    if lanes == SIMD16<Float>.scalarCount {
        UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: SIMD16<Float>.self)
        return
    }
    for lane in 0..<lanes { pointer[lane] = vector[lane] }
}
