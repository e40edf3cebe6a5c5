#!/usr/bin/env bash
# Checks which directories may include which headers, so that a change in one adapter
# recompiles one adapter and the core builds without any of them:
#   tuner/       project headers from tuner/ only; the C++ standard library and Eigen
#   sqlite3.h    storage/, and tests/ (auth_test reads the raw database to check that no
#                secret is stored)
#   httplib.h    api/ and tests/
#   torch/, ATen/, c10/ (LibTorch)
#                workers/, bench/, and the tests/ files that include a workers/ header
#   boost/beast  api/
# Prints each violation as FILE:LINE and exits 1 if there is any. Usage:
# scripts/check_layering.sh [REPO_ROOT]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

violations=0

# violation FILE LINE HEADER WHY
violation() {
  echo "$1:$2: #include $3: $4"
  violations=$((violations + 1))
}

includes_workers_header() { grep -qE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"workers/' "$1"; }

# Every C++ source and header of the project; build trees and run data are not ours.
files=()
while IFS= read -r -d '' file; do
  files+=("${file#./}")
done < <(find . \( -type d \( -name .git -o -name 'build*' \) -o -path ./run -o -path ./data \) \
  -prune -o -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cc' -o -name '*.cpp' \
  -o -name '*.cu' \) -print0 | sort -z)
[ "${#files[@]}" -gt 0 ] || { echo "check_layering: no C++ files under $PWD" >&2; exit 1; }

include_re='^[[:space:]]*#[[:space:]]*include[[:space:]]*(<[^>]*>|"[^"]*")'
# grep -nH: "FILE:LINE:TEXT" for every #include line (paths hold no colon).
while IFS=: read -r file line_no text; do
  [[ "$text" =~ $include_re ]] || continue
  spelled="${BASH_REMATCH[1]}"
  header="${spelled:1:${#spelled}-2}"
  dir="${file%%/*}"

  if [ "$dir" = tuner ]; then
    if [ "${spelled:0:1}" = '"' ]; then
      [[ "$header" == tuner/* ]] ||
        violation "$file" "$line_no" "$spelled" "tuner/ includes project headers from tuner/ only"
    elif ! [[ "$header" =~ ^[a-z_0-9]+$ || "$header" == Eigen/* ]]; then
      violation "$file" "$line_no" "$spelled" \
        "tuner/ includes only the C++ standard library and Eigen"
    fi
  fi

  case "$header" in
    sqlite3.h | */sqlite3.h)
      [[ "$dir" == storage || "$dir" == tests ]] ||
        violation "$file" "$line_no" "$spelled" "sqlite3.h belongs in storage/"
      ;;
    httplib.h | */httplib.h)
      [[ "$dir" == api || "$dir" == tests ]] ||
        violation "$file" "$line_no" "$spelled" "httplib.h belongs in api/ (and tests/)"
      ;;
    torch/* | ATen/* | c10/*)
      if ! [[ "$dir" == workers || "$dir" == bench ]] &&
        ! { [ "$dir" = tests ] && includes_workers_header "$file"; }; then
        violation "$file" "$line_no" "$spelled" \
          "LibTorch belongs in workers/ (and bench/, and tests of workers/)"
      fi
      ;;
    boost/beast*)
      [ "$dir" = api ] ||
        violation "$file" "$line_no" "$spelled" "boost/beast belongs in api/"
      ;;
  esac
done < <(grep -nHE "$include_re" "${files[@]}" || true)

if [ "$violations" -gt 0 ]; then
  echo "check_layering: $violations include(s) cross a layer boundary; the rules are at the top of $0" >&2
  exit 1
fi
echo "check_layering: ok (${#files[@]} files)"
