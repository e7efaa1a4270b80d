#!/usr/bin/env bash
# Build dist/airisd_<version>_amd64.deb and dist/airisd-<version>.x86_64.rpm from one staged tree.
#
# The tree holds a self-contained virtualenv under /opt/airisd made with the system python3 (Debian
# 12's /usr/bin/python3.11), so the packages depend on python3.11 only. The venv is built in the
# stage directory and its scripts' shebangs are rewritten to /opt/airisd; pip's cache is reused, so a
# rebuild costs the wheel installs from cache (a few seconds) plus compression.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
PYTHON=${PACKAGE_PYTHON:-/usr/bin/python3}   # the interpreter the target hosts have
PIP=${PIP:-$SRC/.venv/bin/pip}                # any pip >= 22.3 (it installs into the staged venv)
OUT=${OUT:-$SRC/dist}
B=${BUILD_DIR:-$SRC/build/package}
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)
PREFIX=/opt/airisd

log() { printf 'package: %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "$1 not found: $2"; exit 1; }; }
need dpkg-deb "apt-get install dpkg"
need rpmbuild "apt-get install rpm"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { log "$PYTHON is older than 3.11"; exit 1; }

rm -rf "$B"
mkdir -p "$B/wheel" "$OUT"
ROOT=$B/root

log "wheel $VERSION"
"$PIP" wheel -q --no-deps --disable-pip-version-check -w "$B/wheel" "$SRC" >"$B/wheel.log" 2>&1 \
    || { cat "$B/wheel.log" >&2; exit 1; }
WHEEL=$(ls "$B"/wheel/airisd-*.whl)

log "virtualenv $PREFIX with $("$PYTHON" -V)"
"$PYTHON" -m venv --without-pip "$ROOT$PREFIX"
"$PIP" --python "$ROOT$PREFIX/bin/python" install -q --no-compile --disable-pip-version-check \
    --no-warn-script-location "$WHEEL" 2>&1 | { grep -v '^WARNING: Location' >&2 || true; }
# Scripts and pyvenv.cfg name the staging path: point them at the installed one.
grep -rlI --null "$ROOT$PREFIX" "$ROOT$PREFIX/bin" "$ROOT$PREFIX/pyvenv.cfg" \
    | xargs -0 -r sed -i "s#$ROOT$PREFIX#$PREFIX#g"
rm -f "$ROOT$PREFIX"/bin/activate* "$ROOT$PREFIX"/bin/Activate.ps1
"$PYTHON" -m compileall -q -j0 -s "$ROOT" -p / "$ROOT$PREFIX/lib" >/dev/null
"$ROOT$PREFIX/bin/python" -c 'import airisd, airisd_plugins' \
    || { log "the staged venv does not import airisd"; exit 1; }

log "files"
install -d "$ROOT/usr/bin" "$ROOT/etc/airisd/roles" "$ROOT/usr/lib/systemd/system" \
    "$ROOT/usr/share/doc/airisd" "$ROOT/var/lib/airisd" "$ROOT/var/log/airisd"
ln -s "$PREFIX/bin/airisd" "$ROOT/usr/bin/airisd"
# The system config is the repository's default one, with its data in /var/lib/airisd; each role's
# file is the same with the role fixed, so `airisd@<role>` needs nothing else.
sed 's#${AIRISD_DATA_DIR:-./var}#${AIRISD_DATA_DIR:-/var/lib/airisd}#' etc/airisd.toml > "$ROOT/etc/airisd/airisd.toml"
grep -q '/var/lib/airisd' "$ROOT/etc/airisd/airisd.toml" || { log "data_dir line not found in etc/airisd.toml"; exit 1; }
for role in metrics log trace alert; do
    sed "s#^\( *role = \).*#\1\"$role\"#" "$ROOT/etc/airisd/airisd.toml" > "$ROOT/etc/airisd/roles/$role.toml"
    grep -q "^ *role = \"$role\"" "$ROOT/etc/airisd/roles/$role.toml" || { log "role line not found"; exit 1; }
done
install -m 0644 packaging/systemd/airisd.service packaging/systemd/airisd@.service \
    packaging/systemd/airisd.target "$ROOT/usr/lib/systemd/system/"
for doc in README.md CHANGELOG.md docs/operations.md; do
    [ -f "$doc" ] && install -m 0644 "$doc" "$ROOT/usr/share/doc/airisd/"
done
chmod -R u+rwX,go+rX,go-w "$ROOT"

# -- deb ------------------------------------------------------------------------------------------
log "deb"
DEB=$B/deb
cp -al "$ROOT" "$DEB"
mkdir -p "$DEB/DEBIAN"
SIZE_KB=$(du -sk --exclude=DEBIAN "$DEB" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@SIZE_KB@/$SIZE_KB/" packaging/deb/control.in > "$DEB/DEBIAN/control"
(cd "$DEB" && find etc/airisd -name '*.toml' | sed 's#^#/#' | sort) > "$DEB/DEBIAN/conffiles"
install -m 0755 packaging/scripts/preinstall.sh "$DEB/DEBIAN/preinst"
install -m 0755 packaging/scripts/postinstall.sh "$DEB/DEBIAN/postinst"
install -m 0755 packaging/deb/prerm packaging/deb/postrm "$DEB/DEBIAN/"
DEB_FILE=$OUT/airisd_${VERSION}_amd64.deb
dpkg-deb --root-owner-group -Zgzip -z6 --build "$DEB" "$DEB_FILE" >/dev/null

# -- rpm ------------------------------------------------------------------------------------------
log "rpm"
RPM_VERSION=${VERSION//-/_}
body() { grep -v -e '^#!' -e '^exit 0$' "$1"; }
python_subst() {  # @PREINSTALL@ / @POSTINSTALL@ replaced by the shared scripts' bodies
    "$PYTHON" - "$@" <<'PY'
import sys
spec, pre, post, version = sys.argv[1:5]
text = open(spec).read().replace("@PREINSTALL@", open(pre).read()).replace("@POSTINSTALL@", open(post).read())
sys.stdout.write(text.replace("@RPM_VERSION@", version))
PY
}
body packaging/scripts/preinstall.sh > "$B/pre.sh"
body packaging/scripts/postinstall.sh > "$B/post.sh"
python_subst packaging/rpm/airisd.spec.in "$B/pre.sh" "$B/post.sh" "$RPM_VERSION" > "$B/airisd.spec"
rpmbuild -bb --quiet \
    --define "_topdir $B/rpmbuild" --define "stage $ROOT" \
    --define "_binary_payload w6.gzdio" --define "_build_id_links none" \
    "$B/airisd.spec" >"$B/rpmbuild.log" 2>&1 || { cat "$B/rpmbuild.log" >&2; exit 1; }
cp "$B"/rpmbuild/RPMS/x86_64/airisd-"$RPM_VERSION"-1.x86_64.rpm "$OUT/airisd-$VERSION.x86_64.rpm"

log "built $(cd "$OUT" && ls -s --block-size=K "airisd_${VERSION}_amd64.deb" "airisd-$VERSION.x86_64.rpm" | tr '\n' ' ')"
