#!/usr/bin/env bash
# test_tui.sh - the workbench end to end, driven as a user would through tmux.
#
# Starts `helene tui` on the analytic quadratic objective in a detached
# 100x30 tmux session on a private socket, then: waits for the header,
# pauses (Space) and sees PAUSED, steps once (s) and sees the step advance by
# exactly one, edits the learning rate (e) to an invalid value (sees the
# error, Enter refused) and then to a valid one (sees it applied, with its
# step, and in the header), checkpoints (c) and sees where, resizes to 60x20
# (sees the too-small message) and back to 100x30 (sees the panels), quits
# (q, confirmed with y) and checks that the program exited 0 and left the
# terminal as it found it (stty settings, no alternate screen, cursor shown);
# then, at 120x40, the traps of issue 12 on a running analytic run (the
# 30 steps/s cap, > and g, eps with annealing off, p keeping the update size,
# o taking the new method's lr, the whole FINISHED line, a resumed run
# without "nan"), layer-newton's table and probe chart; then Ctrl-C, SIGTERM
# and SIGHUP on fresh runs: each
# checkpoints (into a run folder without --save, which c also uses), exits
# 128 + the signal and restores the terminal.
#
# Synchronisation is by polling capture-pane for expected text with a
# timeout; the only sleeps are the 0.1 s polling interval and one short
# check that a single step stays a single step.  Exit 0 pass, 1 fail (with
# the reason and the screen), 77 skip (tmux missing).
set -u

HELENE=${HELENE:-./helene}
TIMEOUT=${TUI_TEST_TIMEOUT:-30}

if ! command -v tmux >/dev/null 2>&1; then
    echo "SKIP: tmux is not installed (Debian: apt-get install tmux)"
    exit 77
fi
if [ ! -x "$HELENE" ]; then
    echo "FAIL: $HELENE is not built (run make first, or set HELENE=path)"
    exit 1
fi
HELENE=$(cd "$(dirname "$HELENE")" && pwd)/$(basename "$HELENE")

SOCK=helene-test-$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/helene-tui-test.XXXXXX")
tm() { tmux -L "$SOCK" -f /dev/null "$@"; }
cleanup() {
    local sock
    sock=$(tm display-message -p '#{socket_path}' 2>/dev/null)
    tm kill-server >/dev/null 2>&1
    [ -n "$sock" ] && rm -f "$sock" # tmux leaves the socket file behind
    rm -rf "$WORK"
}
trap cleanup EXIT

screen() { tm capture-pane -p -t tui 2>/dev/null; }

fail() {
    echo "FAIL: $*"
    echo "--- screen (tmux capture-pane):"
    screen
    echo "--- helene stderr:"
    cat "$WORK/stderr" 2>/dev/null
    exit 1
}

# wait_for TEXT WHAT: poll the pane until TEXT appears (fixed string).
wait_for() {
    local deadline=$((SECONDS + TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        screen | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    fail "timed out after ${TIMEOUT}s waiting for $2 (text '$1')"
}

# wait_gone TEXT WHAT: poll until TEXT is no longer on screen.
wait_gone() {
    local deadline=$((SECONDS + TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        screen | grep -qF -- "$1" || return 0
        sleep 0.1
    done
    fail "timed out after ${TIMEOUT}s waiting for $2 to go away (text '$1')"
}

# wait_line1 TEXT WHAT: like wait_for, on the header's first row only.
wait_line1() {
    local deadline=$((SECONDS + TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        screen | head -1 | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    fail "timed out after ${TIMEOUT}s waiting for $2 (text '$1' in the header)"
}

# The step from the header's "step N/100000".
current_step() { screen | sed -n 's/.*step \([0-9][0-9]*\)\/100000.*/\1/p' | head -1; }

keys() { tm send-keys -t tui "$@"; }
text() { tm send-keys -t tui -l -- "$1"; }

# The pane runs a small script: it records the terminal settings, runs the
# workbench with the given flags, then says how it ended and whether the
# settings came back.
cat >"$WORK/run.sh" <<EOF
#!/bin/sh
trap : INT # like an interactive shell: Ctrl-C reaches helene, not this script
cd "$WORK" # runs without --save checkpoint into ./runs/
before=\$(stty -g)
LC_ALL=C.UTF-8 "$HELENE" tui --objective quadratic --optimizer helene --threads 1 "\$@" \\
    2>"$WORK/stderr"
echo "HELENE-EXIT=\$?"
if [ "\$(stty -g)" = "\$before" ]; then echo TTY-RESTORED; else echo TTY-CHANGED; fi
exec sleep 600
EOF
chmod +x "$WORK/run.sh"

# find_helene PID: the helene process among PID's descendants (the pane's
# shell may or may not exec run.sh).
find_helene() {
    local c
    for c in $(pgrep -P "$1"); do
        if [ "$(ps -o comm= -p "$c")" = helene ]; then
            echo "$c"
            return 0
        fi
        find_helene "$c" && return 0
    done
    return 1
}

# terminal_restored: the pane's program ended and left the terminal as found
terminal_restored() {
    wait_for "TTY-" "the terminal check"
    screen | grep -qF "TTY-RESTORED" || fail "the terminal settings (stty) were not restored"
    local state
    state=$(tm display-message -p -t tui '#{alternate_on} #{cursor_flag}')
    [ "$state" = "0 1" ] || fail "terminal not restored: alternate screen/cursor flags are '$state'"
}

tm new-session -d -s tui -x 100 -y 30 "$WORK/run.sh --steps 100000 --save $WORK/ckpt" ||
    fail "cannot start tmux"

# 1. the header
wait_for "objective quadratic" "the header"
wait_for "step " "the step counter"

# 2. pause
keys Space
wait_for "PAUSED" "the paused state"
screen | grep -q "FINISHED" && fail "the run finished before it could be paused"
wait_for "paused at step" "the pause to be logged with its step"
s0=$(current_step)
[ -n "$s0" ] || fail "cannot read the step from the header"

# 3. one step, exactly
keys s
want=$((s0 + 1))
wait_for "step $want/100000" "the step to advance from $s0 to $want"
sleep 0.5 # a single step must stay single: nothing else may run meanwhile
s1=$(current_step)
[ "$s1" = "$want" ] || fail "one 's' moved the step from $s0 to $s1 (want $want)"

# 4. edit the learning rate: invalid, refused; then valid, applied
keys e
wait_for "Edit hyperparameters" "the form"
keys C-u
text "-1"
wait_for "lr: bad value '-1'" "the validation message for lr=-1"
keys Enter
wait_for "cannot apply: lr is invalid" "Enter to be refused"
screen | grep -qF "Edit hyperparameters" || fail "the form closed on an invalid value"
keys C-u
text "0.001"
wait_gone "lr: bad value" "the validation message"
keys Enter
wait_gone "Edit hyperparameters" "the form to close"
wait_for "lr = 0.001 from step $((want + 1))" "the engine to apply lr at the next step"
wait_line1 "=0.001" "the header to show the new learning rate"

# 5. checkpoint, and where it went
keys c
wait_for "checkpoint saved to $WORK/ckpt" "the checkpoint path"
[ -f "$WORK/ckpt/params.safetensors" ] || [ -n "$(ls -A "$WORK/ckpt" 2>/dev/null)" ] ||
    fail "no checkpoint files in $WORK/ckpt"

# 6. too small, and back
tm resize-window -t tui -x 60 -y 20 || fail "cannot resize the tmux window"
wait_for "Terminal too small: 60x20" "the too-small message"
screen | grep -qF "Loss" && fail "panels are drawn below the minimum size"
tm resize-window -t tui -x 100 -y 30
wait_gone "Terminal too small" "the too-small message"
wait_for "Loss" "the loss chart after the resize"
wait_for "Layers" "the layer panel after the resize"
wait_for "Events" "the event log after the resize"
wait_for "step $want/100000" "the header after the resize"

# 7. unsaved progress, then quit: asked first, confirmed
keys s
wait_for "step $((want + 1))/100000" "one more step"
keys q
wait_for "Quit anyway?" "the unsaved-progress question"
keys y
wait_for "HELENE-EXIT=" "the program to exit"
screen | grep -qF "HELENE-EXIT=0" || fail "helene exited with $(screen | sed -n 's/.*HELENE-EXIT=//p')"
terminal_restored
grep -q "stopped at step $((want + 1))" "$WORK/stderr" ||
    fail "no 'stopped at step $((want + 1))' summary on stderr"

# 7b. the traps of issue 12 on a running analytic run (120x40): it is capped
#     at a watchable 30 steps/s, > raises the cap, its loss is on a log axis
#     (g toggles), eps stays in the header with annealing off, an ablation
#     keeps the update size and says so, a switch takes the new method's own
#     lr, and the FINISHED line is not cut
tm resize-window -t tui -x 120 -y 40
rm -f "$WORK/stderr"
tm respawn-pane -k -t tui "$WORK/run.sh --steps 400 --save $WORK/b" || fail "cannot respawn the pane"
wait_for "30 steps/s (capped" "the analytic run capped at 30 steps/s"
wait_for "Loss " "the loss chart"
screen | grep -q "Loss [0-9.]*  log" || fail "the analytic loss chart is not on a log axis"
keys '>'
wait_for "100 steps/s (capped" "> to raise the cap to 100 steps/s"
keys g
wait_for "loss chart: linear scale" "g to switch the loss chart to linear"
keys a
wait_line1 "anneal:off" "annealing off in the header"
screen | head -1 | grep -qF "ε=" || fail "eps vanished from the header with annealing off"
keys p
wait_for "update RMS" "the ablation's update RMS in Events"
screen | grep -qE "update RMS (nan|inf)" && fail "the ablation report is not finite"
keys o
wait_for "mezo" "the optimizer chooser"
keys Home
keys Enter
wait_for "mezo's preset" "the switch to take MeZO's own lr"
wait_line1 "η=3e-5" "MeZO's lr in the header"
wait_for "FINISHED (400 steps, best loss" "the whole FINISHED status"
keys q
wait_for "HELENE-EXIT=0" "the program to exit after the finished run"
# 7c. layer-newton (issue 13): the layer table shows each group's measured
#     curvature beside the quadratic's exact one, its score and its share of
#     the probes, and the probe-allocation chart replaces the heat strip
tm respawn-pane -k -t tui "$WORK/run.sh --optimizer layer-newton --steps 300 --save $WORK/ln" ||
    fail "cannot respawn the pane"
wait_for "Probes per group over time" "the probe-allocation chart"
wait_for "probes" "the probes column"
screen | grep -q " h_min " || fail "no h_min column in layer-newton's table"
# once the stiffest group (the norm weight, curvature 1000) has been measured
# its row shows the measured h next to the true a: both 1000
wait_for "FINISHED (300 steps" "the layer-newton run to finish"
screen | grep "orm.weight" | grep -qE " (1000|999\.[0-9]+) .* 1000 " ||
    fail "the norm weight's measured h is not its curvature 1000: $(screen | grep 'orm.weight')"
keys q
wait_for "HELENE-EXIT=0" "the layer-newton run to exit"
# resumed (the HELENE run checkpointed in 5): the dev title never says "nan"
tm respawn-pane -k -t tui "$WORK/run.sh --resume $WORK/ckpt --steps 100000 --paused" ||
    fail "cannot respawn the pane"
wait_for "PAUSED" "the resumed run"
screen | grep -qi "nan%" && fail "the resumed run shows nan"
keys q
wait_for "HELENE-EXIT=" "the resumed run to quit"
tm resize-window -t tui -x 100 -y 30

# 8. signals: Ctrl-C at the keyboard, SIGTERM from outside and SIGHUP (the
#    terminal closed) all leave through the main loop, checkpoint the run
#    (into --save, or the run folder a run without --save gets), say how to
#    resume, exit 128 + the signal and restore the terminal.  Before Ctrl-C,
#    `c` on a run without --save picks that run folder.
for how in ctrl-c sigterm sighup; do
    rm -f "$WORK/stderr"
    case $how in
    ctrl-c) tm respawn-pane -k -t tui "$WORK/run.sh --steps 1000 --paused" ;;
    *) tm respawn-pane -k -t tui "$WORK/run.sh --steps 1000 --paused --save $WORK/$how" ;;
    esac || fail "cannot respawn the pane"
    wait_for "PAUSED (paused at start" "the header of a fresh run ($how)"
    case $how in
    ctrl-c)
        keys s
        wait_for "step 1/1000" "one step before the checkpoint"
        keys c
        wait_for "run folder runs/quadratic-helene-" "the run folder of a run without --save"
        tm resize-window -t tui -x 140 -y 30 # room for the folder in the header
        wait_for "ckpt runs/quadratic-helene-" "the run folder in the header"
        tm resize-window -t tui -x 100 -y 30
        keys s
        wait_for "step 2/1000" "a second step"
        keys C-c
        want_rc=130
        ;;
    *)
        pid=$(find_helene "$(tm display-message -p -t tui '#{pane_pid}')")
        [ -n "$pid" ] || fail "cannot find the helene process under the pane"
        if [ "$how" = sigterm ]; then
            kill -TERM "$pid"
            want_rc=143
        else
            kill -HUP "$pid"
            want_rc=129
        fi
        ;;
    esac
    wait_for "HELENE-EXIT=" "the program to exit on $how"
    screen | grep -qF "HELENE-EXIT=$want_rc" ||
        fail "$how: helene exited with $(screen | sed -n 's/.*HELENE-EXIT=//p'), want $want_rc"
    terminal_restored
    grep -q "resume with" "$WORK/stderr" || fail "$how: no resume command on stderr"
    if [ "$how" = ctrl-c ]; then
        dir=$(ls -d "$WORK"/runs/quadratic-helene-* 2>/dev/null | head -1)
        [ -n "$dir" ] || fail "ctrl-c: no run folder under $WORK/runs"
        grep -qE '"step":[[:space:]]*2,' "$dir/checkpoint.json" ||
            fail "ctrl-c: the checkpoint in $dir is not of step 2: $(cat "$dir/checkpoint.json")"
    else
        [ -f "$WORK/$how/checkpoint.json" ] || fail "$how: no checkpoint in $WORK/$how"
    fi
done

# 9. the live race view (issue 14): three arms on the quadratic, one header
#    line each, the overlaid charts with a legend, Tab selects an arm (its
#    layer table below), Space pauses every arm, s runs one round, q asks
#    about unsaved progress, y leaves and the summary table follows
cat > "$WORK/race.sh" <<EOF
#!/bin/sh
LC_ALL=C.UTF-8 "$HELENE" race --objective quadratic --arm helene --arm mezo \\
    --arm layer-newton --steps 100000 --threads 1 2> "$WORK/race.err"
echo "RACE-EXIT=\$?"
sleep 600
EOF
chmod +x "$WORK/race.sh"
tm resize-window -t tui -x 120 -y 40
tm respawn-pane -k -t tui "$WORK/race.sh" || fail "cannot respawn the pane for the race"
wait_for "helene race" "the race header"
wait_for "3 layer-newton" "the third arm's header line"
wait_for "Finish line" "the finish-line panel"
screen | grep -q "1 helene .*2 mezo .*3 layer-newton" || fail "no legend of the three arms"
screen | sed -n 2p | grep -qF "▸" || fail "arm 1 is not the selected arm at the start"
keys Tab
keys Tab
wait_for "h_min" "Tab twice: arm 3 (layer-newton) and its table"
screen | sed -n 4p | grep -qF "▸" || fail "Tab twice did not select arm 3"
keys ' '
wait_for "PAUSED" "Space to pause the race"
r0=$(screen | sed -n 1p | sed -n 's|.*step \([0-9]*\)/100000.*|\1|p')
[ -n "$r0" ] || fail "no step in the race header"
keys s
wait_for "step $((r0 + 1))/100000" "s to run exactly one round"
keys q
wait_for "Quit the race?" "q to ask about unsaved progress"
keys y
wait_for "RACE-EXIT=0" "the race to leave with status 0"
screen | grep -q "| 2 | layer-newton |" || fail "no summary row of the third arm"
tm resize-window -t tui -x 100 -y 30

echo "PASS: header, pause, one step ($s0 -> $want), lr -1 refused then 0.001 applied," \
    "checkpoint, 60x20 too small and back, quit with confirmation, a run folder without" \
    "--save, Ctrl-C / SIGTERM / SIGHUP checkpoint and exit 130 / 143 / 129; the 30 steps/s cap," \
    "> and g, eps with anneal off, p keeps the update size, o takes MeZO's lr, FINISHED whole;" \
    "layer-newton's table and probe chart; the race view (Tab, Space, s, q, summary);" \
    "terminal restored every time"
exit 0
