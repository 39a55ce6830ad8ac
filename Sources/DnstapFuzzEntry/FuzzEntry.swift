import DnstapFuzzTargets
import Glibc

// The libFuzzer entry point (built by scripts/fuzz.sh with -sanitize=fuzzer,address): one binary
// for every target, chosen by DNSTAP_FUZZ_TARGET. In an ordinary build this library is unused.

private let target: FuzzTarget = {
    let name = getenv("DNSTAP_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        print("DNSTAP_FUZZ_TARGET must be one of: \(names)")
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}
