# bench_opt125.sh - sourced by the step benchmarks (bench_train.sh,
# bench_lnewton.sh, bench_mpi.sh, bench_scale.sh): $tmp/long.tsv, 200
# labelled sentences of ~62 tokens, so each prompt is 64 tokens with BOS,
# and (unless BENCH_NO_OPT125=1) an OPT-125m-shaped F16 model folder in
# $tmp/opt125.  Needs $tmp and ./mkmodel.
awk 'BEGIN {
  printf "sentence\tlabel\n";
  for (i = 0; i < 200; i++) {
    s = "";
    for (w = 0; w < 56; w++) s = s sprintf("%s%s", w ? " " : "", (w * 7 + i) % 3 ? "the film" : "story");
    printf "%s\t%d\n", s, i % 2;
  }
}' > "$tmp/long.tsv"
if [ "${BENCH_NO_OPT125:-0}" != 1 ]; then
  ./mkmodel "$tmp/opt125" opt-125m F16 > /dev/null
fi
