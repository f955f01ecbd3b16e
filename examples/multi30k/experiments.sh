#!/usr/bin/env bash
# Every experiment of the paper on one GPU: training runs per table, ensemble decoding, scoring.
# Run with --help.
set -euo pipefail
# The braces make bash read the whole script before running it, so editing the file while a
# long run is going cannot change what this run does next.
{

PROG=experiments.sh
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ALL_STAGES=(main table2 table3 table4 table5 transformer decode evaluate seeds summary)

usage() {
  cat <<'EOF'
Usage: examples/multi30k/experiments.sh [--stage S]... [--dry-run] [-- EXTRA_FAIRSEQ_TRAIN_FLAGS...]

Train, decode and score every system of "Adversarial reconstruction for Multi-modal Machine
Translation" with train.sh, one run after the other on one GPU. A finished run (SAVE_DIR/DONE) is
skipped, so the script can be stopped and started again; a run that was stopped resumes from its
checkpoint_last.pt.

Stages (default: all, in this order; repeat --stage to pick several):
  main     en-de, SEEDS each (Table 1): baseline, mse ("Baseline + G"), g-wgan (|z| 128),
           q-waae (lambda_r 0.2, lambda_a 0.2)
  table2   en-de q-waae, lambda_r x lambda_a in {0.2, 0.5, 0.8}^2 (9 runs), SWEEP_SEEDS each
  table3   en-de g-wgan, |z| in {64, 128, 256, 512} (4 runs), SWEEP_SEEDS each
  table4   en-de mse-nov and q-waae-nov ("no v": --visual-fusion none), SEEDS each
  table5   en-fr q-waae, SEEDS each
  transformer
           en-de on DATA_JOINED_DE, SEEDS each, with Wu et al. (2021)'s Transformer recipe
           (train.sh --help): transformer-text-only, gated, selective-attn, each alone and with
           mse, q-waae, g-wgan; then finetuned-gated and finetuned-selective-attn, alone and
           with each mode: the seed's transformer-text-only run (trained before them)
           fine-tuned with the image (train.sh's fine-tuning recipe)
  decode   for every run above: fairseq-generate --beam B --remove-bpe with the ensemble of its
           seeds' checkpoints (--path a:b:c:d:e; checkpoint_best.pt and B = BEAM for the cGRU,
           checkpoint_avg.pt and B = TRANSFORMER_BEAM for the Transformer) on its test splits,
           then python -m fairseq_mmt_adv.evaluation.scoring (tokenized lowercased BLEU, sacreBLEU, chrF,
           METEOR)
  evaluate for every run above, each seed's checkpoint alone: does the model use the image?
           (docs/EVALUATION.md) fairseq-mmt-evaluate incongruent on EVAL_SPLITS (a sweep: its
           SWEEP_SPLITS) with PERMUTATIONS permutations of the images, and, when COMMUTE is set,
           fairseq-mmt-evaluate contrastive on CoMMuTE's set of the pair (en-de, en-fr)
  seeds    multi_seed.py for the SEEDS systems: per-seed scores, mean +- std, ensemble
  summary  one line per scored ensemble: BLEU (tok, lc), METEOR, sacreBLEU, the seeds' mean +- std
           and, against the family's baseline (baseline; transformer-text-only), the BLEU
           difference with its p-value (paired bootstrap resampling): p < 0.05 tells a gain
           from test-set noise; beside them, from the evaluate stage, the CoMMuTE accuracy
           with its bootstrap interval and the incongruent-image BLEU drop with its p-value

Options:
  --stage S     run stage S only (repeatable)
  --dry-run     print the commands instead of running them (train.sh --dry-run for training)
  -h, --help    show this help
  -- ...        extra flags for every fairseq-train command (e.g. -- --max-epoch 60 --fp16)

Environment:
  DATA_DE, DATA_FR      prepared data (scripts/prepare-multi30k.sh --out, with --features);
                        default data-bin/en-de and data-bin/en-fr
  DATA_JOINED_DE        en-de prepared with --joined-dictionary, for the Transformer stage
                        (--share-all-embeddings); default data-bin/en-de-joined
  FEATURES_DE, FEATURES_FR  feature directories (default: DATA_DE, DATA_FR; the Transformer
                        stage uses FEATURES_DE too)
  CHECKPOINTS           default checkpoints; a run trains in CHECKPOINTS/PAIR/NAME/seedN
  RESULTS               default results; decoding writes RESULTS/PAIR/NAME/seedsS/
                        beamB.ensemble.SPLIT.{txt,json,log} (S: the seeds, e.g. 1-2-3-4-5),
                        evaluate beside them beamB.seedN.incongruent.SPLIT.{json,log} and
                        seedN.contrastive.commute.{json,log}
  SEEDS                 seeds of the main systems (default "1 2 3 4 5")
  SWEEP_SEEDS           seeds of the Table 2-3 sweeps (default "1"; "1 2 3 4 5" for the paper's
                        protocol, 5x the time)
  TEST_SPLITS           splits decoded for the main systems (default: those of DATA/splits.tsv
                        but valid and train, i.e. test test1 test2 test3)
  SWEEP_SPLITS          splits decoded for the sweeps (default test2 = test_2017_mscoco, the
                        COCO-ambiguous set of Tables 2-4)
  EVAL_SPLITS           splits of the evaluate stage (default "test test1 test2": Test 2016,
                        Test 2017, COCO-ambiguous)
  PERMUTATIONS          permutations of the images per split in the evaluate stage (default 3)
  COMMUTE               a clone of github.com/MatthieuFP/CoMMuTE (DIR/en-de, DIR/en-fr) with its
                        images, which you download, in DIR/images; unset: CoMMuTE is skipped
  COMMUTE_IMAGES        CoMMuTE's image directory (default COMMUTE/images)
  EXTRACTOR_WEIGHTS     ResNet-50 state_dict for CoMMuTE's images (fairseq-mmt-evaluate
                        --weights; default: torchvision's)
  BEAM                  beam size for decoding the cGRU systems (default 12)
  TRANSFORMER_BEAM      beam size for decoding the Transformer systems (default 5)
  BATCH_SIZE            decoding batch size (default 64)
  PYTHON                Python with fairseq_mmt_adv (default: the repository's .venv)
  FAIRSEQ_BIN           directory of fairseq-train/-generate (default: next to PYTHON)
  METEOR_JAR            meteor-1.5.jar for METEOR (see python -m fairseq_mmt_adv.evaluation.scoring --help)

Examples:
  examples/multi30k/experiments.sh --dry-run --stage table2
  examples/multi30k/experiments.sh --stage main --stage decode --stage seeds
  examples/multi30k/experiments.sh --stage transformer --stage decode --stage summary
  COMMUTE=CoMMuTE examples/multi30k/experiments.sh --stage evaluate --stage summary
EOF
}

# shellcheck source=examples/multi30k/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

log() { printf '[%s] %s\n' "$PROG" "$*"; }

STAGES=()
DRY_RUN=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --stage)
      [[ $# -ge 2 ]] || die "--stage needs a value (see --help)"
      [[ " ${ALL_STAGES[*]} " == *" $2 "* ]] || die "unknown stage '$2' (one of ${ALL_STAGES[*]})"
      STAGES+=("$2")
      shift 2
      ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option '$1' (fairseq-train flags go after '--'; see --help)" ;;
  esac
done
[[ ${#STAGES[@]} -gt 0 ]] || STAGES=("${ALL_STAGES[@]}")
selected() { [[ " ${STAGES[*]} " == *" $1 "* ]]; }

DATA_DE=${DATA_DE:-data-bin/en-de}
DATA_FR=${DATA_FR:-data-bin/en-fr}
DATA_JOINED_DE=${DATA_JOINED_DE:-data-bin/en-de-joined}
FEATURES_DE=${FEATURES_DE:-$DATA_DE}
FEATURES_FR=${FEATURES_FR:-$DATA_FR}
CHECKPOINTS=${CHECKPOINTS:-checkpoints}
RESULTS=${RESULTS:-results}
SEEDS=${SEEDS:-1 2 3 4 5}
SWEEP_SEEDS=${SWEEP_SEEDS:-1}
SWEEP_SPLITS=${SWEEP_SPLITS:-test2}
BEAM=${BEAM:-12}
TRANSFORMER_BEAM=${TRANSFORMER_BEAM:-5}
BATCH_SIZE=${BATCH_SIZE:-64}
EVAL_SPLITS=${EVAL_SPLITS:-test test1 test2}
PERMUTATIONS=${PERMUTATIONS:-3}
COMMUTE=${COMMUTE:-}
COMMUTE_IMAGES=${COMMUTE_IMAGES:-${COMMUTE:+$COMMUTE/images}}
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z ${FAIRSEQ_BIN:-} ]]; then
  FAIRSEQ_BIN=$(dirname "$(command -v "$PYTHON" || echo "$PYTHON")")
fi
export FAIRSEQ_BIN
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

data_of() {  # data_of PAIR [STAGE]: the Transformer stage's en-de has one joined dictionary
  if [[ ${2:-} == transformer ]]; then
    echo "$DATA_JOINED_DE"
  elif [[ $1 == en-de ]]; then
    echo "$DATA_DE"
  else
    echo "$DATA_FR"
  fi
}
features_of() { if [[ $1 == en-de ]]; then echo "$FEATURES_DE"; else echo "$FEATURES_FR"; fi; }
beam_of() { if [[ $1 == transformer ]]; then echo "$TRANSFORMER_BEAM"; else echo "$BEAM"; fi; }

# The runs: "stage|pair|system|train.sh options|seeds|decoded splits ('' = TEST_SPLITS)".
RUNS=(
  "main|en-de|baseline||$SEEDS|"
  "main|en-de|mse|--lambda-r 0.2|$SEEDS|"
  "main|en-de|g-wgan|--noise-dim 128 --lambda-a 0.2|$SEEDS|"
  "main|en-de|q-waae|--lambda-r 0.2 --lambda-a 0.2|$SEEDS|"
)
for lambda_a in 0.2 0.5 0.8; do  # Table 2: rows lambda_a, columns lambda_r
  for lambda_r in 0.2 0.5 0.8; do
    options="--lambda-r $lambda_r --lambda-a $lambda_a"
    RUNS+=("table2|en-de|q-waae|$options|$SWEEP_SEEDS|$SWEEP_SPLITS")
  done
done
for z in 64 128 256 512; do  # Table 3
  RUNS+=("table3|en-de|g-wgan|--noise-dim $z --lambda-a 0.2|$SWEEP_SEEDS|$SWEEP_SPLITS")
done
RUNS+=(
  "table4|en-de|mse-nov|--lambda-r 0.2|$SEEDS|"
  "table4|en-de|q-waae-nov|--lambda-r 0.2 --lambda-a 0.2|$SEEDS|"
  "table5|en-fr|q-waae|--lambda-r 0.2 --lambda-a 0.2|$SEEDS|"
)
# the paper's weights (systems.py); the finetuned-* runs start from the transformer-text-only
# run of their seed, so they come after it (the runs train in this order)
for base in transformer-text-only gated selective-attn finetuned-gated finetuned-selective-attn; do
  for system in "$base" "$base+mse" "$base+q-waae" "$base+g-wgan"; do
    RUNS+=("transformer|en-de|$system||$SEEDS|")
  done
done

# The settings of every run's system in one table, from one systems.py process (each imports
# fairseq: seconds); the train.sh calls below read their rows there (SYSTEMS_TABLE).
systems_table() {
  local run rstage pair system options seeds splits
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    printf '%s\n' "--system $system $options"
  done | bash "$HERE/train.sh" --systems-table
}

# train_sh STAGE PAIR SYSTEM OPTIONS SEED ARGS...: call train.sh for one run.
train_sh() {
  local stage=$1 pair=$2 system=$3 options=$4 seed=$5 opts
  shift 5
  read -ra opts <<<"$options"
  CHECKPOINTS=$CHECKPOINTS/$pair bash "$HERE/train.sh" --data "$(data_of "$pair" "$stage")" \
    --features "$(features_of "$pair")" --system "$system" --seed "$seed" "${opts[@]}" "$@"
}

run_checkpoints() {  # run_checkpoints STAGE PAIR SYSTEM OPTIONS SEEDS: each seed's decoded one
  local seed
  for seed in $5; do train_sh "$1" "$2" "$3" "$4" "$seed" --print-checkpoint; done
}

train_stage() {
  local stage=$1 run rstage pair system options seeds splits seed n=0
  log "stage $stage"
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    [[ $rstage == "$stage" ]] || continue
    for seed in $seeds; do
      n=$((n + 1))
      printf '# %s run %d: %s %s %s seed %s\n' "$stage" "$n" "$pair" "$system" "$options" "$seed"
      if [[ $DRY_RUN == 1 ]]; then
        train_sh "$stage" "$pair" "$system" "$options" "$seed" --dry-run -- "${EXTRA[@]}"
      else
        train_sh "$stage" "$pair" "$system" "$options" "$seed" -- "${EXTRA[@]}"
      fi
    done
  done
}

test_splits() {  # test_splits PAIR: TEST_SPLITS, else the splits of DATA/splits.tsv but train/valid
  local data
  data=$(data_of "$1")
  if [[ -n ${TEST_SPLITS:-} ]]; then
    echo "$TEST_SPLITS"
  elif [[ -f $data/splits.tsv ]]; then
    awk -F'\t' 'NR > 1 && $1 != "train" && $1 != "valid" { printf "%s ", $1 }' "$data/splits.tsv"
  else
    echo "test test1 test2 test3"
  fi
}

target_lang() { echo "${1#en-}"; }

results_dir() {  # results_dir PAIR CHECKPOINT SEEDS: RESULTS/PAIR/NAME/seedsS of a run
  local name
  name=$(basename "$(dirname "$(dirname "$2")")")
  echo "$RESULTS/$1/$name/seeds$(join_seeds "$3")"
}

join_seeds() {  # join_seeds "1 2 3": 1-2-3
  local words
  read -ra words <<<"$1"
  (IFS=-; echo "${words[*]}")
}

report_scores() {  # report_scores FILE.json: "BLEU x METEOR y" of a scoring --json output
  "$PYTHON" -m fairseq_mmt_adv.recipes.summary score-line "$1"
}

declare -A DECODED=()
FAILED=()
decode_stage() {
  local run rstage pair system options seeds splits seed checkpoints paths split data features
  local lang out name key generate score checkpoint base beam
  log "stage decode (beam $BEAM, Transformer $TRANSFORMER_BEAM)"
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    [[ -n $splits ]] || splits=$(test_splits "$pair")
    data=$(data_of "$pair" "$rstage")
    features=$(features_of "$pair")
    lang=$(target_lang "$pair")
    beam=$(beam_of "$rstage")
    checkpoints=()
    mapfile -t checkpoints < <(run_checkpoints "$rstage" "$pair" "$system" "$options" "$seeds")
    paths=$(printf '%s:' "${checkpoints[@]}")
    paths=${paths%:}
    name=$(basename "$(dirname "$(dirname "${checkpoints[0]}")")")
    out=$(results_dir "$pair" "${checkpoints[0]}" "$seeds")
    for split in $splits; do
      key="$out|$split"
      [[ -z ${DECODED[$key]:-} ]] || continue  # a sweep point that is also a main system
      DECODED[$key]=1
      base=$out/beam$beam.ensemble.$split
      generate=("$FAIRSEQ_BIN/fairseq-generate" "$data" --user-dir "$REPO/fairseq_mmt_adv"
        --task multimodal_translation --visual-features "$features" --path "$paths"
        --gen-subset "$split" --beam "$beam" --remove-bpe --batch-size "$BATCH_SIZE")
      score=("$PYTHON" -m fairseq_mmt_adv.evaluation.scoring --fairseq-generate "$base.txt"
        --references "$data/text/$split.$lang" --raw-references "$data/text/$split.raw.$lang"
        --detokenize "$lang" --sacrebleu-lowercase --json)
      printf '# decode %s %s seeds %s on %s\n' "$pair" "$name" "$seeds" "$split"
      if [[ $DRY_RUN == 1 ]]; then
        printf '%s > %s\n' "$(print_command "${generate[@]}")" "$base.txt"
        printf '%s > %s\n' "$(print_command "${score[@]}")" "$base.json"
        continue
      fi
      if [[ -s $base.json ]]; then
        log "$base.json exists, skipped"
        continue
      fi
      local missing=()
      for checkpoint in "${checkpoints[@]}"; do
        [[ -f $checkpoint ]] || missing+=("$checkpoint")
      done
      if [[ ${#missing[@]} -gt 0 ]]; then
        log "skipped: no ${missing[*]} (train stage $rstage first)"
        continue
      fi
      if ! compgen -G "$data/$split.$pair.*.idx" >/dev/null; then
        log "skipped: $data has no split $split"
        continue
      fi
      mkdir -p "$out"
      if ! "${generate[@]}" >"$base.txt.tmp" 2>"$base.log"; then
        log "FAILED: fairseq-generate, see $base.log"
        FAILED+=("$base")
        continue
      fi
      mv "$base.txt.tmp" "$base.txt"
      if ! "${score[@]}" >"$base.json.tmp"; then
        log "FAILED: scoring of $base.txt"
        FAILED+=("$base")
        continue
      fi
      mv "$base.json.tmp" "$base.json"
      log "$base.json: $(report_scores "$base.json")"
    done
  done
}

# evaluate_step JSON COMMAND...: one fairseq-mmt-evaluate command that writes JSON, its stdout
# and stderr in JSON's .log; --dry-run prints it. A JSON already there is kept (restarts).
evaluate_step() {
  local json=$1 log_file=${1%.json}.log
  shift
  if [[ $DRY_RUN == 1 ]]; then
    print_command "$@"
    return
  fi
  if [[ -s $json ]]; then
    log "$json exists, skipped"
    return
  fi
  mkdir -p "$(dirname "$json")"
  if "$@" >"$log_file" 2>&1; then
    log "$json written"
  else
    rm -f "$json"
    log "FAILED: $(print_command "$@"), see $log_file"
    FAILED+=("$json")
  fi
}

# commute_ready PAIR: whether CoMMuTE's set of PAIR is there (why not is said once a pair).
declare -A COMMUTE_SAID=()
commute_ready() {
  local set=$COMMUTE/$1 lang why=""
  lang=$(target_lang "$1")
  [[ -n $COMMUTE ]] || return 1
  [[ $DRY_RUN == 0 ]] || return 0
  if [[ ! -f $set/src.en || ! -f $set/correct.$lang || ! -f $set/img.order ]]; then
    why="no $set/src.en, correct.$lang or img.order: COMMUTE=$COMMUTE must be a clone of"
    why+=" https://github.com/MatthieuFP/CoMMuTE"
  elif [[ ! -d $COMMUTE_IMAGES ]]; then
    why="no image directory $COMMUTE_IMAGES: download CoMMuTE's images.tar.gz (its README) and"
    why+=" extract it in $COMMUTE, or set COMMUTE_IMAGES"
  fi
  [[ -n $why ]] || return 0
  [[ -n ${COMMUTE_SAID[$1]:-} ]] || log "CoMMuTE $1 skipped: $why"
  COMMUTE_SAID[$1]=1
  return 1
}

# evaluate_seed STAGE PAIR OUT CHECKPOINT SEED SPLITS: one checkpoint's image use: incongruent
# images on each split, and CoMMuTE's set of the pair when COMMUTE is set. The file names are
# those that fairseq_mmt_adv/recipes/summary.py reads.
evaluate_seed() {
  local stage=$1 pair=$2 out=$3 checkpoint=$4 seed=$5 splits=$6 data lang beam split json set
  local evaluate=("$PYTHON" -m fairseq_mmt_adv.evaluation.cli) weights=()
  data=$(data_of "$pair" "$stage")
  lang=$(target_lang "$pair")
  beam=$(beam_of "$stage")
  if [[ $DRY_RUN == 0 && ! -f $checkpoint ]]; then
    log "skipped: no $checkpoint (train stage $stage first)"
    return
  fi
  for split in $splits; do
    json=$out/beam$beam.seed$seed.incongruent.$split.json
    printf '# evaluate %s seed %s: incongruent images on %s\n' "$out" "$seed" "$split"
    if [[ $DRY_RUN == 0 ]] && ! compgen -G "$data/$split.$pair.*.idx" >/dev/null; then
      log "skipped: $data has no split $split"
      continue
    fi
    evaluate_step "$json" "${evaluate[@]}" incongruent "$data" --path "$checkpoint" \
      --visual-features "$(features_of "$pair")" --gen-subset "$split" \
      --permutations "$PERMUTATIONS" --beam "$beam" --remove-bpe --batch-size "$BATCH_SIZE" \
      --json "$json"
  done
  commute_ready "$pair" || return 0
  set=$COMMUTE/$pair
  json=$out/seed$seed.contrastive.commute.json
  [[ -z ${EXTRACTOR_WEIGHTS:-} ]] || weights=(--weights "$EXTRACTOR_WEIGHTS")
  printf '# evaluate %s seed %s: CoMMuTE %s\n' "$out" "$seed" "$pair"
  evaluate_step "$json" "${evaluate[@]}" contrastive "$data" --path "$checkpoint" \
    --source "$set/src.en" --correct "$set/correct.$lang" --incorrect "$set/incorrect.$lang" \
    --images "$COMMUTE_IMAGES" --image-order "$set/img.order" --batch-size "$BATCH_SIZE" \
    "${weights[@]}" --json "$json"
}

declare -A EVALUATED=()
evaluate_stage() {
  local run rstage pair system options seeds splits checkpoints out seed i=0
  log "stage evaluate (incongruent images: $PERMUTATIONS permutations; beam $BEAM," \
    "Transformer $TRANSFORMER_BEAM)"
  [[ -n $COMMUTE ]] || log "CoMMuTE skipped: set COMMUTE=DIR, a clone of" \
    "https://github.com/MatthieuFP/CoMMuTE with its images in DIR/images (README.md, section 4)"
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    [[ -n $splits ]] || splits=$EVAL_SPLITS
    checkpoints=()
    mapfile -t checkpoints < <(run_checkpoints "$rstage" "$pair" "$system" "$options" "$seeds")
    out=$(results_dir "$pair" "${checkpoints[0]}" "$seeds")
    i=0
    for seed in $seeds; do
      i=$((i + 1))
      [[ -z ${EVALUATED[$out|$seed]:-} ]] || continue  # a sweep point that is a main system
      EVALUATED[$out|$seed]=1
      evaluate_seed "$rstage" "$pair" "$out" "${checkpoints[i - 1]}" "$seed" "$splits"
    done
  done
}

seeds_stage() {
  local run rstage pair system options seeds splits seed checkpoints name command out split_list
  local beam dirs checkpoint
  log "stage seeds (beam $BEAM, Transformer $TRANSFORMER_BEAM)"
  for run in "${RUNS[@]}"; do
    IFS='|' read -r rstage pair system options seeds splits <<<"$run"
    [[ " main table4 table5 transformer " == *" $rstage "* ]] || continue
    [[ -n $splits ]] || splits=$(test_splits "$pair")
    beam=$(beam_of "$rstage")
    checkpoints=()
    mapfile -t checkpoints < <(run_checkpoints "$rstage" "$pair" "$system" "$options" "$seeds")
    name=$(basename "$(dirname "$(dirname "${checkpoints[0]}")")")
    out=$(results_dir "$pair" "${checkpoints[0]}" "$seeds")
    read -ra split_list <<<"$splits"
    dirs=()
    for checkpoint in "${checkpoints[@]}"; do dirs+=("$(dirname "$checkpoint")"); done
    command=("$PYTHON" "$HERE/multi_seed.py" --data "$(data_of "$pair" "$rstage")"
      --features "$(features_of "$pair")" --splits "${split_list[@]}" --beam "$beam"
      --batch-size "$BATCH_SIZE" --output-dir "$out" --reuse --json "$out/beam$beam.seeds.json"
      --name "$pair $name" --checkpoints "${dirs[@]}"
      --checkpoint-name "$(basename "${checkpoints[0]}")")
    printf '# seeds %s %s\n' "$pair" "$name"
    if [[ $DRY_RUN == 1 ]]; then
      print_command "${command[@]}"
      continue
    fi
    local missing=()
    for checkpoint in "${checkpoints[@]}"; do
      [[ -f $checkpoint ]] || missing+=("$checkpoint")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
      log "skipped: no ${missing[*]} (train stage $rstage first)"
      continue
    fi
    if ! "${command[@]}"; then
      log "FAILED: $(print_command "${command[@]}")"
      FAILED+=("seeds $pair $name")
    fi
  done
}

summary_stage() {
  local command=("$PYTHON" -m fairseq_mmt_adv.recipes.summary table "$RESULTS" "$BEAM") pair data
  [[ $TRANSFORMER_BEAM == "$BEAM" ]] || command+=("$TRANSFORMER_BEAM")
  for pair in en-de en-fr; do  # the references of the p-values
    data=$(data_of "$pair")
    [[ ! -d $data/text ]] || command+=(--data "$pair=$data")
  done
  log "stage summary"
  printf '# summary of %s/*/*/*/beam{%s}.ensemble.*.json\n' "$RESULTS" "$BEAM,$TRANSFORMER_BEAM"
  if [[ $DRY_RUN == 1 ]]; then
    print_command "${command[@]}"
    return
  fi
  "${command[@]}"
}

if [[ ${STAGES[*]} != summary ]]; then
  SYSTEMS_TABLE=$(mktemp "${TMPDIR:-/tmp}/experiments-systems.XXXXXX")
  trap 'rm -f "$SYSTEMS_TABLE"' EXIT
  systems_table >"$SYSTEMS_TABLE" || die "train.sh --systems-table failed (above)"
  export SYSTEMS_TABLE
fi
for stage in "${ALL_STAGES[@]}"; do
  selected "$stage" || continue
  case $stage in
    main | table2 | table3 | table4 | table5 | transformer) train_stage "$stage" ;;
    decode) decode_stage ;;
    evaluate) evaluate_stage ;;
    seeds) seeds_stage ;;
    summary) summary_stage ;;
  esac
done
[[ ${#FAILED[@]} -eq 0 ]] || die "${#FAILED[@]} steps failed: ${FAILED[*]}"
exit
}
