#!/usr/bin/env bash
# Build the iiifserver container image without Docker: podman (daemonless, rootless or root)
# on a Debian 12 base made by mmdebstrap from Debian's own packages, so that no registry
# image is pulled. With Docker, `docker build -f deploy/Dockerfile .` is all it takes.
#
#   deploy/build-image.sh [TAG] [extra podman build arguments, e.g. --build-arg DEMO=1]
#
# Needs: apt-get install podman mmdebstrap uidmap (rootless: also slirp4netns, fuse-overlayfs
# and subordinate ids for the user in /etc/subuid and /etc/subgid).
# BASE_TAR=path reuses a root filesystem tarball made before (mmdebstrap takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/iiifserver:latest}
shift || true
base=localhost/debian-bookworm-minbase:latest
work=${BUILD_DIR:-$(mktemp -d)}

if ! podman image exists "$base"; then
  tarball=${BASE_TAR:-$work/bookworm-minbase.tar}
  if [ ! -f "$tarball" ]; then
    echo "build-image: mmdebstrap bookworm (minbase) -> $tarball"
    # unshare mode runs mmdebstrap without root; as root it uses root mode.
    mmdebstrap --variant=minbase --include=ca-certificates bookworm "$tarball" \
      "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main"
  fi
  podman import --change 'CMD ["/bin/bash"]' "$tarball" "$base"
fi

echo "build-image: podman build -> $tag"
# --format docker: the OCI format has no HEALTHCHECK and no SHELL.
# ISOLATION=chroot where the OCI runtime cannot make containers (no usable cgroups, e.g. inside
# another container): the RUN steps then run in a chroot, with the host's network.
# PIP_CERT (a CA bundle, e.g. a TLS-intercepting proxy's) is handed to pip as a build secret.
podman build --format docker ${ISOLATION:+--isolation "$ISOLATION"} \
  ${PIP_CERT:+--secret "id=pip_cert,src=$PIP_CERT"} \
  --file deploy/Dockerfile --ignorefile deploy/Dockerfile.dockerignore \
  --build-arg "BASE_IMAGE=$base" --tag "$tag" "$@" .
echo "build-image: done. Try: podman run --rm -p 8000:8000 $tag  (then GET http://127.0.0.1:8000/health)"
