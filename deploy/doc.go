// Package deploy is Slipway's deployment system: code in, running release
// out, from any node.
//
//   - git push over smart HTTP (git.go): the real git programs
//     (receive-pack, upload-pack) run on a copy of the app's bare
//     repository restored from the blob store; a pre-receive hook hands the
//     pushed refs to the node, which builds a push to main or master and
//     streams the build's output back as `remote:` lines. Pushes to one app
//     are serialized by a lease held in Raft; the repository is stored back
//     only by the lease holder, after git accepted the push.
//   - Builds (service.go): a build is a record in Raft (fsm.Build) and a
//     build dyno — a one-off dyno of type "build" that the scheduler places
//     on any node with capacity, running the slug compiler (`slipway
//     slug-compile`) from a "builder" slug that holds the slipway binary.
//     The compiler talks to its node over the API port (internal.go):
//     it fetches the source and build cache from the blob store, streams
//     its output, and pushes back the slug and the new cache; the node
//     records the result with build.finish, which also creates the
//     release (pending while a release-phase dyno runs its command).
//   - The slug compiler (compile.go) implements Heroku's buildpack API
//     (buildpack.go): bin/detect, bin/compile BUILD CACHE ENV, bin/release,
//     several buildpacks in order with export files, .slugignore, the
//     Procfile (procfile.go) overriding default process types, STACK, a
//     15-minute limit and the 500 MB slug limit. Buildpacks shipped in the
//     repository (package buildpacks) work offline; others are fetched by
//     URL (git or tarball).
//   - Output (output.go) is kept by one node while a build runs, followed
//     by any node over internal RPC, and stored in the blob store when the
//     build ends.
package deploy
