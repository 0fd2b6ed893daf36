// Package deploy holds no code: it is the home of Cordon's deployment
// files and of the tests that keep them honest.
//
// The files are the reference configuration (cordon.yaml, every key with
// its default), the multi-edge configurations (cordon-edge.yaml,
// cordon-control.yaml), a starter policy (policy.yaml), the container
// image (Dockerfile), a compose file with Redis, one control and two edges
// (compose.yaml), Kubernetes manifests (k8s/) and systemd units
// (systemd/). README.md says how to use each.
//
// The tests parse every file, build the cordon binary once and run
// `cordon serve --check-config` on every configuration, and check that
// what the files say about each other agrees: ports with the listen
// addresses and the rooms' defaults, probes with the admin paths, mounts
// with the paths the configurations name, flags with `cordon serve
// --help`, references between Kubernetes objects with the objects
// defined. Run `go test ./deploy -update` to regenerate
// k8s/configmap.yaml from the configuration files it embeds.
//
// It deliberately holds no deployment logic of its own: the binary is the
// only thing that reads these files at run time.
package deploy
