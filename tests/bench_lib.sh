# bench_lib.sh - shell functions the bench scripts share (sourced, not run).
# shellcheck shell=bash
# A journal's step records and a /usr/bin/time -v report, read one way.

# One line per step record of a JSONL journal: "step total perturb forward
# update" (ms; total = the three phases, the time a step costs).
bench_steps() {
  awk '/"step":/ && !/"event"/ {
      match($0, /"step":[0-9]+/); printf "%d", substr($0, RSTART + 7, RLENGTH - 7);
      n = split("ms_perturb ms_forward ms_update", k, " "); t = 0;
      for (i = 1; i <= n; i++) {
        match($0, "\"" k[i] "\":[0-9.e+-]+");
        x[i] = substr($0, RSTART + length(k[i]) + 3, RLENGTH - length(k[i]) - 3); t += x[i] }
      printf " %.17g %s %s %s\n", t, x[1], x[2], x[3] }' "$1"
}

# The median of the numbers on stdin (mean of the middle two for an even
# count) in printf format $1 (default %.0f); "-" when there are none.
bench_median() {
  sort -g | awk -v fmt="${1:-%.0f}" '{ v[++m] = $1 }
    END { if (!m) { print "-"; exit }
          printf fmt, m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }'
}

# Median step time (ms) over the steps after the first (warm caches), in
# format $2 (default %.0f).
bench_median_step() {
  bench_steps "$1" | awk '$1 >= 2 { print $2 }' | bench_median "${2:-%.0f}"
}

# The first step's time (ms).
bench_first_step() {
  bench_steps "$1" | awk '$1 < 2 { printf "%.17g", $2 }'
}

# Peak RSS in MiB from a /usr/bin/time -v report (not rounded).
bench_rss_mib() {
  awk -F: '/Maximum resident/ { gsub(/ /, "", $2); print $2 / 1024 }' "$1"
}
