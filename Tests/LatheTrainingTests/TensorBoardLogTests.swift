import Foundation
import XCTest
@testable import LatheTraining

/// The event files TensorBoard reads, decoded by a reader written apart from the writer: record framing, both
/// masked CRCs, and the Event / Summary.Value fields.
final class TensorBoardLogTests: XCTestCase {
    func testCRC32CMatchesKnownVectors() {
        // RFC 3720 (iSCSI) B.4 and the usual check value.
        let vectors: [(Data, UInt32)] = [(Data("123456789".utf8), 0xe306_9283), (Data(repeating: 0, count: 32), 0x8a91_36aa),
                                         (Data(repeating: 0xff, count: 32), 0x62a8_ab43), (Data((0..<32).map { UInt8($0) }), 0x46dd_794e)]
        for (data, expected) in vectors {
            XCTAssertEqual(TensorBoardLog.crc32c(data), expected, "crc32c of \(Array(data))")
            XCTAssertEqual(TensorBoardEventReader.bitwiseCRC32C(data), expected, "the test's own crc32c of \(Array(data))")
        }
    }

    func testWrittenFileDecodesToItsEventsWithValidCRCs() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        let before = Date().timeIntervalSince1970
        let log = try TensorBoardLog(folder: folder)
        try log.append(step: 0, metrics: ["eval_loss": 2.5])
        try log.append(step: 300, metrics: ["loss": 1.25, "lr": 2e-4, "rewards/chosen": -0.125, "eval_rewards/margins": 3.5])
        let events = try TensorBoardEventReader.read(log.url)
        XCTAssertTrue(log.url.lastPathComponent.hasPrefix("events.out.tfevents."), log.url.lastPathComponent)
        XCTAssertEqual(events.count, 3)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[0].step, 0)
        XCTAssertEqual(events[1].step, 0)
        XCTAssertEqual(events[1].scalars, ["eval/loss": 2.5])
        XCTAssertEqual(events[2].step, 300)
        XCTAssertEqual(events[2].scalars, ["train/loss": 1.25, "train/learning_rate": Float(2e-4), "train/rewards/chosen": -0.125,
                                           "eval/rewards/margins": 3.5])
        for event in events {
            XCTAssert(event.wallTime >= before.rounded(.down) && event.wallTime <= Date().timeIntervalSince1970,
                      "wall time \(event.wallTime)")
        }
    }

    func testAResumedLogIsANewFileThatStartsASessionAfterTheCheckpoint() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        let first = try TensorBoardLog(folder: folder)
        let second = try TensorBoardLog(folder: folder, resumedAt: 7)
        XCTAssertNotEqual(first.url, second.url)
        let events = try TensorBoardEventReader.read(second.url)
        XCTAssertEqual(events.map(\.sessionStart), [false, true])
        XCTAssertEqual(events[1].step, 8, "TensorBoard drops the earlier file's events from this step on")
    }

    func testCorruptedRecordIsDetected() throws {
        let folder = try Fixtures.temporaryFolder(for: self)
        let log = try TensorBoardLog(folder: folder)
        try log.append(step: 1, metrics: ["loss": 1])
        var bytes = try Data(contentsOf: log.url)
        bytes[bytes.count - 6] ^= 0x01  // inside the last event's data
        let damaged = folder.appendingPathComponent("damaged")
        try bytes.write(to: damaged)
        XCTAssertThrowsError(try TensorBoardEventReader.read(damaged))
    }
}

/// Reads TFRecord event files (checking both CRCs) and the few Event fields Lathe writes; its own CRC-32C, bit by bit.
enum TensorBoardEventReader {
    struct Event {
        var wallTime = 0.0
        var step = 0
        var fileVersion: String?
        var sessionStart = false
        var scalars: [String: Float] = [:]
    }

    struct Malformed: Error, CustomStringConvertible { let description: String }

    static func bitwiseCRC32C(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in data {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ (0x82f6_3b78 & (0 &- (crc & 1))) }
        }
        return ~crc
    }

    static func masked(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xa282_ead8 }

    static func read(_ url: URL) throws -> [Event] {
        let bytes = [UInt8](try Data(contentsOf: url))
        var events: [Event] = [], at = 0
        func uint(_ offset: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * $1) }
        }
        while at < bytes.count {
            guard at + 12 <= bytes.count else { throw Malformed(description: "\(url.path): truncated header at byte \(at)") }
            let length = Int(uint(at, 8))
            guard UInt32(uint(at + 8, 4)) == masked(bitwiseCRC32C(Data(bytes[at..<at + 8]))) else {
                throw Malformed(description: "\(url.path): bad length CRC at byte \(at)")
            }
            let start = at + 12, end = start + length
            guard end + 4 <= bytes.count else { throw Malformed(description: "\(url.path): truncated record at byte \(at)") }
            guard UInt32(uint(end, 4)) == masked(bitwiseCRC32C(Data(bytes[start..<end]))) else {
                throw Malformed(description: "\(url.path): bad data CRC at byte \(at)")
            }
            events.append(try event(Array(bytes[start..<end])))
            at = end + 4
        }
        return events
    }

    /// (field, wire type, varint or fixed value, length-delimited bytes) for each field of a message.
    static func fields(_ m: [UInt8]) throws -> [(Int, Int, UInt64, [UInt8])] {
        var result: [(Int, Int, UInt64, [UInt8])] = [], i = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < m.count else { throw Malformed(description: "varint runs past the message") }
                let b = m[i]; i += 1
                value |= UInt64(b & 0x7f) << shift
                if b < 0x80 { return value }
                shift += 7
            }
        }
        func fixed(_ n: Int) throws -> UInt64 {
            guard i + n <= m.count else { throw Malformed(description: "fixed\(8 * n) runs past the message") }
            defer { i += n }
            return (0..<n).reduce(UInt64(0)) { $0 | UInt64(m[i + $1]) << (8 * $1) }
        }
        while i < m.count {
            let key = try varint()
            let field = Int(key >> 3), wire = Int(key & 7)
            switch wire {
            case 0: result.append((field, wire, try varint(), []))
            case 1: result.append((field, wire, try fixed(8), []))
            case 5: result.append((field, wire, try fixed(4), []))
            case 2:
                let n = Int(try varint())
                guard i + n <= m.count else { throw Malformed(description: "field \(field) runs past the message") }
                result.append((field, wire, 0, Array(m[i..<i + n]))); i += n
            default: throw Malformed(description: "wire type \(wire) of field \(field)")
            }
        }
        return result
    }

    static func event(_ m: [UInt8]) throws -> Event {
        var e = Event()
        for (field, wire, value, bytes) in try fields(m) {
            switch (field, wire) {
            case (1, 1): e.wallTime = Double(bitPattern: value)
            case (2, 0): e.step = Int(Int64(bitPattern: value))
            case (3, 2): e.fileVersion = String(decoding: bytes, as: UTF8.self)
            case (5, 2):
                for (f, w, _, valueBytes) in try fields(bytes) where f == 1 && w == 2 {
                    var tag = "", simple: Float?
                    for (vf, vw, v, vb) in try fields(valueBytes) {
                        if vf == 1, vw == 2 { tag = String(decoding: vb, as: UTF8.self) }
                        if vf == 2, vw == 5 { simple = Float(bitPattern: UInt32(v)) }
                    }
                    e.scalars[tag] = simple
                }
            case (7, 2): e.sessionStart = try fields(bytes).contains { $0.0 == 1 && $0.2 == 1 }
            default: throw Malformed(description: "unexpected Event field \(field) (wire type \(wire))")
            }
        }
        return e
    }

    /// The scalars of a run folder's event files as TensorBoard shows them: files in name order, and a session
    /// start dropping what earlier files logged from its step on. [tag: [step: value]]
    static func scalars(inRun folder: URL) throws -> [String: [Int: Float]] {
        let tb = folder.appendingPathComponent("tb")
        let names = try FileManager.default.contentsOfDirectory(atPath: tb.path).filter { $0.contains("tfevents") }.sorted()
        var result: [String: [Int: Float]] = [:]
        for name in names {
            for event in try read(tb.appendingPathComponent(name)) {
                if event.sessionStart { result = result.mapValues { $0.filter { $0.key < event.step } } }
                for (tag, value) in event.scalars { result[tag, default: [:]][event.step] = value }
            }
        }
        return result
    }
}
