# bench_opt125.sh - sourced by the step benchmarks (bench_train.sh,
# bench_lnewton.sh): an OPT-125m-shaped F16 model folder in $tmp/opt125 and
# $tmp/long.tsv, 200 labelled sentences of ~62 tokens, so each prompt is 64
# tokens with BOS.  Needs $tmp and ./mkmodel.
./mkmodel "$tmp/opt125" opt-125m F16 > /dev/null
awk 'BEGIN {
  printf "sentence\tlabel\n";
  for (i = 0; i < 200; i++) {
    s = "";
    for (w = 0; w < 56; w++) s = s sprintf("%s%s", w ? " " : "", (w * 7 + i) % 3 ? "the film" : "story");
    printf "%s\t%d\n", s, i % 2;
  }
}' > "$tmp/long.tsv"
