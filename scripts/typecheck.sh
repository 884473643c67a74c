#!/usr/bin/env bash
# mypy over the `cuas_node` package. The folders node/, drivers/ and calibration/ are one import
# package only through setuptools' package-dir mapping, which mypy cannot follow (it reads
# folders, not import hooks); so mypy reads a tree of symbolic links shaped like the package, and
# its messages are mapped back to the real paths.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=.venv/typecheck-tree
rm -rf "$tree" && mkdir -p "$tree/cuas_node"
for entry in node/*; do
  case "$(basename "$entry")" in __pycache__) continue ;; esac
  ln -s "$PWD/$entry" "$tree/cuas_node/$(basename "$entry")"
done
ln -s "$PWD/drivers" "$tree/cuas_node/drivers"
ln -s "$PWD/calibration" "$tree/cuas_node/calibration"
MYPYPATH="$tree" .venv/bin/mypy -p cuas_node "$@" 2>&1 | sed -e "s#$tree/cuas_node/drivers/#drivers/#g" \
  -e "s#$tree/cuas_node/calibration/#calibration/#g" -e "s#$tree/cuas_node/#node/#g"
exit "${PIPESTATUS[0]}"
