#!/usr/bin/env bash
# Builds the two images the compose tests run, with no registry: nothing is pulled.
#
#   scripts/build-images.sh [--debug] [--no-build] [--tag TAG]
#
#   earthcatalog:TAG     both binaries (`earthcatalog`, `earthcatalog-worker`), the shared
#                        libraries they link (read off ldd), CA certificates, user 10001; the same
#                        layout, user, working directory and command as deploy/Dockerfile
#   earthcatalog-s3:TAG  the test S3 server (moto with the one-lock wrapper of
#                        tests/s3/moto_serialized.py) on this machine's CPython, listening on 9000
#
# Each image is a root file system assembled in a folder and `docker import`ed, so no base
# image is needed. deploy/Dockerfile stays the public recipe for users who can pull bases.
# --debug packs the debug binaries that `cargo build --workspace --bins` already made (what the
# tests use, to spare CI a release build); the default is a release build. --no-build packs the
# binaries as they are (the tests build them first). An image whose
# inputs (binaries, libraries, this script, the moto wrapper and requirements) are unchanged is
# not rebuilt: its content hash is part of its name, and TAG only points at it.
# Prints the two image names on its last two lines.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
profile=release
build=yes
tag=local
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --no-build) build=no ;;
    --tag) tag="$2"; shift ;;
    *) echo "build-images.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
target="${CARGO_TARGET_DIR:-$root/target}"
cache="$root/.cache/images"
mkdir -p "$cache"
# Tests build at the same time: one builds, the others wait and find the images made.
exec 9>"$cache/.lock"
flock 9

# The moto version the tests pin, with the extras its server needs.
moto_requirement="$(grep -E '^moto(\[|=)' "$root/tests/python/requirements.txt" | sed -E 's/^moto(\[[^]]*\])?/moto[s3,server]/')"

if [ "$build" = no ]; then
  :
elif [ "$profile" = release ]; then
  (cd "$root" && cargo build --release --locked --bin earthcatalog --bin earthcatalog-worker)
else
  # The same build as scripts/test.sh and the tests make, so it is a no-op after them.
  (cd "$root" && cargo build --quiet --workspace --bins)
fi
bins=("$target/$profile/earthcatalog" "$target/$profile/earthcatalog-worker")

# Copies every shared library the ELF files under $1 need (outside $1) to the same path in $1.
copy_linked_libraries() {
  local rootfs="$1"
  find "$rootfs" -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
    xargs -0 -r file --no-pad | grep -E ': ELF .*(executable|shared object)' | cut -d: -f1 |
    while read -r elf; do
      LD_LIBRARY_PATH="${EXTRA_LIBRARY_PATH:-}" ldd "$elf" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}'
    done | sort -u | while read -r lib; do
      case "$lib" in "$rootfs"/*) continue ;; esac
      # The loader is named by its canonical path in every binary (PT_INTERP); keep symlinks as
      # files so the image needs no link farm.
      mkdir -p "$rootfs$(dirname "$lib")"
      cp -L "$lib" "$rootfs$lib"
    done
}

# The accounts and folders every image gets: root, and earthcatalog (10001) as in the Dockerfile.
base_files() {
  local rootfs="$1"
  mkdir -p "$rootfs"/{etc,tmp,usr/local/bin,var/lib/earthcatalog,etc/ssl/certs}
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nearthcatalog:x:10001:10001::/var/lib/earthcatalog:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nearthcatalog:x:10001:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chown 10001:10001 "$rootfs/var/lib/earthcatalog"
}

# Imports $1 as image $2 (with the --change lines that follow) unless it exists; tags it $3.
import_rootfs() {
  local rootfs="$1" image="$2" alias="$3"
  shift 3
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    local changes=()
    for c in "$@"; do changes+=(--change "$c"); done
    tar --numeric-owner -C "$rootfs" -c . | docker import "${changes[@]}" - "$image" >/dev/null
  fi
  docker tag "$image" "$alias"
}

# --- earthcatalog ---------------------------------------------------------------------------
app_hash="$( (sha256sum "${bins[@]}" "$0"; for b in "${bins[@]}"; do ldd "$b"; done) | sha256sum | cut -c1-16)"
app_image="earthcatalog:$app_hash"
if ! docker image inspect "$app_image" >/dev/null 2>&1; then
  rootfs="$(mktemp -d "$cache/rootfs-app.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  base_files "$rootfs"
  for b in "${bins[@]}"; do
    # Debug info is most of a debug binary's size; the symbols (for backtraces) stay.
    strip --strip-debug -o "$rootfs/usr/local/bin/$(basename "$b")" "$b"
  done
  copy_linked_libraries "$rootfs"
  import_rootfs "$rootfs" "$app_image" "earthcatalog:$tag" \
    'WORKDIR /var/lib/earthcatalog' 'USER 10001:10001' 'EXPOSE 50051' \
    'ENV PATH=/usr/local/bin:/usr/bin:/bin' 'ENV MIMALLOC_ALLOW_THP=0' \
    'CMD ["earthcatalog", "--help"]'
  rm -rf "$rootfs"
  trap - EXIT
else
  docker tag "$app_image" "earthcatalog:$tag"
fi

# --- earthcatalog-s3 (moto) -----------------------------------------------------------------
python="$(command -v python3)"
prefix="$("$python" -c 'import sys; print(sys.base_prefix)')"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
s3_hash="$( (echo "$moto_requirement"; "$python" --version; sha256sum "$0" "$root/tests/s3/moto_serialized.py") | sha256sum | cut -c1-16)"
s3_image="earthcatalog-s3:$s3_hash"
if ! docker image inspect "$s3_image" >/dev/null 2>&1; then
  # The installed packages depend only on the requirement and the interpreter.
  site="$cache/moto-site-$( (echo "$moto_requirement"; "$python" --version) | sha256sum | cut -c1-16)"
  if [ ! -f "$site/.done" ]; then
    rm -rf "$site"
    "$python" -m pip install --quiet --disable-pip-version-check --no-compile --no-warn-conflicts --target "$site" "$moto_requirement"
    touch "$site/.done"
  fi
  rootfs="$(mktemp -d "$cache/rootfs-s3.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  base_files "$rootfs"
  mkdir -p "$rootfs/opt/python/bin" "$rootfs/opt/python/lib" "$rootfs/opt/earthcatalog-s3"
  cp -L "$prefix/bin/python$pyver" "$rootfs/opt/python/bin/python3"
  cp -L "$prefix"/lib/libpython"$pyver"*.so.* "$rootfs/opt/python/lib/" 2>/dev/null || true
  # The standard library without its tests, IDLE, tkinter and the host's own site-packages.
  tar -C "$prefix/lib" --exclude="python$pyver/test" --exclude="python$pyver/site-packages" \
    --exclude="python$pyver/idlelib" --exclude="python$pyver/tkinter" \
    --exclude="python$pyver/ensurepip" --exclude='__pycache__' -c "python$pyver" |
    tar -C "$rootfs/opt/python/lib" -x
  mkdir -p "$rootfs/opt/python/lib/python$pyver/site-packages"
  cp -a "$site/." "$rootfs/opt/python/lib/python$pyver/site-packages/"
  rm -f "$rootfs/opt/python/lib/python$pyver/site-packages/.done"
  cp "$root/tests/s3/moto_serialized.py" "$rootfs/opt/earthcatalog-s3/"
  EXTRA_LIBRARY_PATH="$rootfs/opt/python/lib" copy_linked_libraries "$rootfs"
  import_rootfs "$rootfs" "$s3_image" "earthcatalog-s3:$tag" \
    'ENV PATH=/opt/python/bin:/usr/local/bin:/usr/bin:/bin' 'ENV LD_LIBRARY_PATH=/opt/python/lib' \
    'ENV PYTHONDONTWRITEBYTECODE=1' 'ENV PYTHONUNBUFFERED=1' 'EXPOSE 9000' \
    'CMD ["python3", "/opt/earthcatalog-s3/moto_serialized.py", "-H", "0.0.0.0", "-p", "9000"]'
  rm -rf "$rootfs"
  trap - EXIT
else
  docker tag "$s3_image" "earthcatalog-s3:$tag"
fi

# Older builds of either image (other content hashes) only take disk space: untag them; a
# container still running one keeps it until it is removed.
for keep in "$app_image" "$s3_image"; do
  repo="${keep%%:*}"
  docker images --format '{{.Repository}}:{{.Tag}}' "$repo" | grep -E ":[0-9a-f]{16}$" |
    grep -vx "$keep" | xargs -r docker rmi >/dev/null 2>&1 || true
done

echo "earthcatalog:$tag"
echo "earthcatalog-s3:$tag"
