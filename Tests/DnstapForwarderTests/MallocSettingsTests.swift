import CDnstapProtobufC
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import DnstapForwarder

@Suite("glibc malloc settings at start")
struct MallocSettingsTests {
    @Test("glibc's own settings in the environment win; other tunables and variables do not count")
    func environment() {
        for set in [
            ["MALLOC_TRIM_THRESHOLD_": "0"], ["MALLOC_MMAP_THRESHOLD_": "131072"],
            ["GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"],
            ["GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"],
        ] {
            #expect(MallocSettings.environmentSetsThresholds(set), "\(set)")
            #expect(MallocSettings.apply(environment: set) == .leftToEnvironment, "\(set)")
        }
        for unset in [
            [:], ["GLIBC_TUNABLES": "glibc.malloc.arena_max=2"], ["GLIBC_TUNABLES": "glibc.malloc.trim_threshold_x=1"],
            ["MALLOC_ARENA_MAX": "2"], ["DNSTAP_MALLOC_TRIM_THRESHOLD_": "1"],
        ] {
            #expect(!MallocSettings.environmentSetsThresholds(unset), "\(unset)")
        }
    }

    #if canImport(Glibc)
    /// Under ThreadSanitizer or AddressSanitizer, malloc is the sanitizer's: glibc's settings (and its
    /// `mallinfo2`) have nothing to act on.
    static let mallocIsGlibc = ["__tsan_init", "__asan_init"].allSatisfy { (name: String) in dlsym(nil, name) == nil }

    @Test(
        "applied, a block under the kept size comes from an arena and a larger one from mmap",
        .enabled(if: mallocIsGlibc, "malloc is a sanitizer's"))
    func applied() {
        #expect(MallocSettings.apply(environment: [:]) == .applied)
        // mallinfo2's hblks: the blocks malloc has mapped with mmap, in the whole process.
        func mapsWhileHeld(_ bytes: Int) -> Int {
            let before = Int(mallinfo2().hblks)
            let block = malloc(bytes)
            defer { free(block) }
            return Int(mallinfo2().hblks) - before
        }
        #expect(mapsWhileHeld(Int(MallocSettings.keptBytes) - (64 << 10)) == 0)
        #expect(mapsWhileHeld(Int(MallocSettings.keptBytes) + (64 << 10)) == 1)
    }
    #endif
}
