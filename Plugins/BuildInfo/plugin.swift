import Foundation
import PackagePlugin

/// Writes `BuildInfo.swift` (the git commit the binary is built from, for `--version`) before
/// every build of the target it is applied to. Without git, or outside a git checkout (a container
/// build from a copy of the sources), the commit is nil. The file is rewritten only when it changes,
/// so an unchanged commit rebuilds nothing.
@main
struct BuildInfo: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildInfo.swift")
        let script = #"""
            commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null) || commit=""
            case "$commit" in
              *[!0-9a-f]*|"") value=nil ;;
              *) value="\"$commit\"" ;;
            esac
            printf '/// Made by Plugins/BuildInfo at build time.\nlet buildCommit: String? = %s\n' "$value" > "$2.new"
            if cmp -s "$2.new" "$2"; then rm -f "$2.new"; else mv "$2.new" "$2"; fi
            """#
        return [
            .prebuildCommand(
                displayName: "BuildInfo: the git commit for --version",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                outputFilesDirectory: context.pluginWorkDirectoryURL)
        ]
    }
}
