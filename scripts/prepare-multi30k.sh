#!/usr/bin/env bash
# Prepare Multi30K (task 1) for fairseq-mmt-adv: tokenized text -> BPE -> fairseq binaries, a split
# table, linked visual features and the vocabulary sizes. Run with --help for the options.
set -euo pipefail

PROG=prepare-multi30k
DATASET_URL=https://github.com/multi30k/dataset.git

usage() {
  cat <<'EOF'
Usage: scripts/prepare-multi30k.sh --out DIR (--multi30k DIR | --download) [options]

Turn the Multi30K task-1 data into a fairseq data directory for `fairseq-train --user-dir
fairseq_mmt_adv`: text -> BPE (subword-nmt) -> fairseq-preprocess binaries, OUT/splits.tsv,
OUT/{split}.npy visual features, OUT/vocab_sizes.txt. Re-running skips the finished steps.

Data:
  --multi30k DIR        local copy of the multi30k-dataset repository (holds data/task1/{raw,tok,
                        image_splits}); with --download, where to clone it
  --download            git clone (or pull) https://github.com/multi30k/dataset into the
                        --multi30k DIR, by default OUT/multi30k-dataset
  --pair PAIR           en-de (default), en-fr or en-cs (en-cs: train, val, test_2016_flickr and
                        test_2018_flickr only)
  --features DIR        folder of visual feature files named by Multi30K split, e.g. train.npy
                        val.npy test_2016_flickr.npy ...; linked into OUT as train.npy valid.npy
                        test.npy ... (float64 files are converted to float32 instead)
  --feature-pattern P   file name of a split's features in --features DIR, '{split}' standing for
                        the Multi30K split name (default '{split}.npy'; e.g.
                        '{split}-resnet50-avgpool.npy')

Preprocessing:
  --tokenization T      official (default): the dataset's tok/*.lc.norm.tok.* files;
                        moses: tokenize raw/*.gz again with sacremoses
  --lowercase           lowercase before tokenizing (only with --tokenization moses; the official
                        files are lowercased already)
  --bpe-merges N        BPE merge operations (default 10000)
  --joint-bpe           one BPE model learned on the source and target train text (default)
  --separate-bpe        one BPE model per language
  --joined-dictionary   one fairseq dictionary for both languages (needs joint BPE), as
                        --share-all-embeddings needs; by default one dictionary per language
  --out DIR             output directory (required)
  --workers N           parallel workers for subword-nmt and fairseq-preprocess (default 4)
  --python PY           Python whose bin directory (or else PATH) provides fairseq-preprocess and
                        subword-nmt (default: the repository's .venv/bin/python when it exists,
                        else python3 on PATH)
  -h, --help            show this help

Output in OUT:
  {split}.en-XX.{en,XX}.{bin,idx}, dict.{en,XX}.txt   fairseq-preprocess binaries and dictionaries
  splits.tsv            fairseq split name, Multi30K split name, sentences
  text/{split}.{lang}   tokenized text (the references for tokenized BLEU / METEOR)
  text/{split}.raw.{lang}  untokenized text (the references for sacreBLEU)
  text/{split}.bpe.{lang}  BPE-segmented text as binarized
  bpe/                  BPE codes and vocabularies
  vocab_sizes.txt       dictionary sizes beside the paper's
  {split}.npy           visual features (with --features)
  logs/                 the tools' logs

Example:
  scripts/prepare-multi30k.sh --multi30k ~/multi30k-dataset --pair en-de --out data-bin/en-de \
      --features ~/multi30k-features --feature-pattern '{split}-resnet50-avgpool.npy'
EOF
}

die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

log() { printf '[%s] %s\n' "$PROG" "$*"; }

PAIR=en-de
M30K=
DOWNLOAD=0
FEATURES=
FEATURE_PATTERN='{split}.npy'
MERGES=10000
TOKENIZATION=official
LOWERCASE=0
JOINT=1
JOINED_DICT=0
OUT=
WORKERS=4
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=
# the package's steps (fairseq_mmt_adv.recipes) from this checkout, whichever Python runs them
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

need_value() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --pair) need_value "$@"; PAIR=$2; shift 2 ;;
    --multi30k) need_value "$@"; M30K=$2; shift 2 ;;
    --download) DOWNLOAD=1; shift ;;
    --features) need_value "$@"; FEATURES=$2; shift 2 ;;
    --feature-pattern) need_value "$@"; FEATURE_PATTERN=$2; shift 2 ;;
    --bpe-merges) need_value "$@"; MERGES=$2; shift 2 ;;
    --tokenization) need_value "$@"; TOKENIZATION=$2; shift 2 ;;
    --lowercase) LOWERCASE=1; shift ;;
    --joint-bpe) JOINT=1; shift ;;
    --separate-bpe) JOINT=0; shift ;;
    --joined-dictionary) JOINED_DICT=1; shift ;;
    --out) need_value "$@"; OUT=$2; shift 2 ;;
    --workers) need_value "$@"; WORKERS=$2; shift 2 ;;
    --python) need_value "$@"; PY=$2; shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

[[ -n $OUT ]] || die "--out DIR is required (see --help)"
[[ $MERGES =~ ^[1-9][0-9]*$ ]] || die "--bpe-merges must be a positive integer, not '$MERGES'"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer, not '$WORKERS'"
[[ $FEATURE_PATTERN == *'{split}'* ]] || die "--feature-pattern must contain '{split}'"
[[ $JOINED_DICT == 0 || $JOINT == 1 ]] || die "--joined-dictionary needs joint BPE (drop --separate-bpe)"
case $TOKENIZATION in
  official) [[ $LOWERCASE == 0 ]] || die "--lowercase only applies to --tokenization moses" ;;
  moses) ;;
  *) die "--tokenization must be 'official' or 'moses', not '$TOKENIZATION'" ;;
esac

SRC=en
case $PAIR in
  en-de | en-fr)
    FSPLITS=(train valid test test1 test2 test3)
    MSPLITS=(train val test_2016_flickr test_2017_flickr test_2017_mscoco test_2018_flickr)
    ;;
  en-cs)
    FSPLITS=(train valid test test1)
    MSPLITS=(train val test_2016_flickr test_2018_flickr)
    ;;
  *) die "--pair must be en-de, en-fr or en-cs, not '$PAIR'" ;;
esac
TGT=${PAIR#en-}
LANGS=("$SRC" "$TGT")

# OUT is created only once the inputs passed their checks: a bad --multi30k leaves nothing behind.
if [[ $DOWNLOAD == 1 ]]; then
  M30K=${M30K:-$OUT/multi30k-dataset}
  command -v git >/dev/null || die "--download needs git on PATH"
  mkdir -p "$(dirname "$M30K")"
  if [[ -d $M30K/.git ]]; then
    log "updating $M30K (git pull)"
    git -C "$M30K" pull --ff-only --quiet || die "git pull in $M30K failed"
  else
    [[ ! -e $M30K ]] || die "$M30K exists but is not a git clone; remove it or drop --download"
    log "cloning $DATASET_URL into $M30K"
    rm -rf "$M30K.partial"
    git clone --quiet --depth 1 "$DATASET_URL" "$M30K.partial" || die "git clone of $DATASET_URL failed"
    mv "$M30K.partial" "$M30K"
  fi
fi
[[ -n $M30K ]] || die "give the dataset with --multi30k DIR or --download"
TASK1=$M30K/data/task1
[[ -d $TASK1 ]] || die "$TASK1 does not exist: --multi30k must be a copy of $DATASET_URL"

# Tools: next to the given Python (default: the repository's .venv, else python3), else on PATH.
if [[ -z $PY ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PY=$REPO/.venv/bin/python; else PY=python3; fi
fi
PY_PATH=$(command -v "$PY") || die "Python '$PY' not found (give one with --python)"
BIN_DIR=$(dirname "$PY_PATH")
find_tool() {
  if [[ -x $BIN_DIR/$1 ]]; then
    printf '%s\n' "$BIN_DIR/$1"
  else
    command -v "$1" || die "$1 not found in $BIN_DIR or on PATH (pip install $2 in the --python env)"
  fi
}
SUBWORD_NMT=$(find_tool subword-nmt subword-nmt)
FAIRSEQ_PREPROCESS=$(find_tool fairseq-preprocess fairseq-fixed)
log "tools: $PY_PATH, $SUBWORD_NMT, $FAIRSEQ_PREPROCESS"

count_lines() {  # count_lines FILE: lines of a text or .gz file (a last line without \n counts)
  if [[ $1 == *.gz ]]; then
    gzip -cd -- "$1" | awk 'END { print NR }'
  else
    awk 'END { print NR }' "$1"
  fi
}

raw_file() { printf '%s\n' "$TASK1/raw/$1.$2.gz"; }
tok_file() { printf '%s\n' "$TASK1/tok/$1.lc.norm.tok.$2"; }
image_list() { printf '%s\n' "$TASK1/image_splits/$1.txt"; }

# Check every input exists and that the files of a split have as many lines as its image list.
declare -A SENTENCES
check_inputs() {
  local m l files f n expected bad
  for m in "${MSPLITS[@]}"; do
    files=("$(image_list "$m")")
    for l in "${LANGS[@]}"; do
      files+=("$(raw_file "$m" "$l")")
      [[ $TOKENIZATION == moses ]] || files+=("$(tok_file "$m" "$l")")
    done
    expected=
    bad=()
    for f in "${files[@]}"; do
      [[ -f $f ]] || die "missing input $f: --multi30k must be a full copy of $DATASET_URL" \
        "(re-clone it, or use --download)"
      n=$(count_lines "$f") || die "cannot read $f (a damaged .gz?): re-fetch the dataset"
      if [[ -z $expected ]]; then
        expected=$n
      elif [[ $n != "$expected" ]]; then
        bad+=("$f has $n lines")
      fi
    done
    [[ $expected -gt 0 ]] || die "$(image_list "$m") is empty: re-fetch the dataset"
    if [[ ${#bad[@]} -gt 0 ]]; then
      die "truncated input for split $m: $(printf '%s; ' "${bad[@]}")but $(image_list "$m") has" \
        "$expected lines (one per image and sentence). Re-fetch these files from $DATASET_URL."
    fi
    SENTENCES[$m]=$expected
  done
}

log "checking the inputs in $TASK1 ($PAIR: ${MSPLITS[*]})"
check_inputs
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Steps and stamps: a step that finished writes .stamps/NAME holding its settings; a step that runs
# again removes the stamps of the steps after it. Every output is written to a temporary name first.
STEPS=(text bpe-learn bpe-apply binarize splits vocab features)
STAMPS=$OUT/.stamps
mkdir -p "$STAMPS" "$OUT/text" "$OUT/bpe" "$OUT/logs"

step_index() {
  local i
  for i in "${!STEPS[@]}"; do [[ ${STEPS[$i]} != "$1" ]] || { echo $((i + 1)); return; }; done
}

# start_step NAME KEY DESCRIPTION: print the progress line; false when the step is done already.
start_step() {
  local k i
  k=$(step_index "$1")
  if [[ -f $STAMPS/$1 && "$(cat "$STAMPS/$1")" == "$2" ]]; then
    log "[$k/${#STEPS[@]}] $3: done before, skipped"
    return 1
  fi
  log "[$k/${#STEPS[@]}] $3"
  for ((i = k - 1; i < ${#STEPS[@]}; i++)); do rm -f "$STAMPS/${STEPS[$i]}"; done
}

finish_step() { printf '%s\n' "$2" >"$STAMPS/$1.tmp" && mv "$STAMPS/$1.tmp" "$STAMPS/$1"; }

# The preprocessing settings belong to OUT: another run into the same OUT must use the same ones.
CONFIG="pair=$PAIR tokenization=$TOKENIZATION lowercase=$LOWERCASE bpe_merges=$MERGES joint_bpe=$JOINT"
[[ $JOINED_DICT == 0 ]] || CONFIG+=" joined_dictionary=1"
if [[ -f $OUT/config.txt ]]; then
  [[ "$(cat "$OUT/config.txt")" == "$CONFIG" ]] || die "$OUT was prepared with other settings" \
    "($(cat "$OUT/config.txt")) than now ($CONFIG): use another --out or delete $OUT"
else
  printf '%s\n' "$CONFIG" >"$OUT/config.txt.tmp" && mv "$OUT/config.txt.tmp" "$OUT/config.txt"
fi

# 1. Text: tokenized text (official files or sacremoses) and untokenized references.
tokenize_moses() {  # tokenize_moses IN.gz OUT LANG [IN.gz OUT LANG ...]
  local lower=()
  [[ $LOWERCASE == 0 ]] || lower=(--lowercase)
  "$PY" -m fairseq_mmt_adv.recipes.moses --prog "$PROG" --workers "$WORKERS" "${lower[@]}" "$@" \
    || exit 1
}

copy_text() {  # copy_text IN OUT: plain or .gz IN to OUT via a temporary file
  if [[ $1 == *.gz ]]; then gzip -cd -- "$1" >"$2.tmp"; else cp -- "$1" "$2.tmp"; fi
  mv "$2.tmp" "$2"
}

if start_step text "$CONFIG" "text: $TOKENIZATION tokenization of ${#MSPLITS[@]} splits x $PAIR"; then
  moses_jobs=()
  for i in "${!MSPLITS[@]}"; do
    for l in "${LANGS[@]}"; do
      copy_text "$(raw_file "${MSPLITS[$i]}" "$l")" "$OUT/text/${FSPLITS[$i]}.raw.$l"
      if [[ $TOKENIZATION == official ]]; then
        copy_text "$(tok_file "${MSPLITS[$i]}" "$l")" "$OUT/text/${FSPLITS[$i]}.$l"
      else
        moses_jobs+=("$(raw_file "${MSPLITS[$i]}" "$l")" "$OUT/text/${FSPLITS[$i]}.$l" "$l")
      fi
    done
  done
  [[ ${#moses_jobs[@]} -eq 0 ]] || tokenize_moses "${moses_jobs[@]}"
  finish_step text "$CONFIG"
fi

# 2. Learn BPE on the train split.
if [[ $JOINT == 1 ]]; then BPE_KIND=joint; else BPE_KIND=separate; fi
codes_file() { if [[ $JOINT == 1 ]]; then echo "$OUT/bpe/codes"; else echo "$OUT/bpe/codes.$1"; fi; }

if start_step bpe-learn "$CONFIG" "learn $BPE_KIND BPE ($MERGES merges) on train"; then
  if [[ $JOINT == 1 ]]; then
    "$SUBWORD_NMT" learn-joint-bpe-and-vocab --input "$OUT/text/train.$SRC" "$OUT/text/train.$TGT" \
      --symbols "$MERGES" --num-workers "$WORKERS" --output "$OUT/bpe/codes.tmp" \
      --write-vocabulary "$OUT/bpe/vocab.$SRC.tmp" "$OUT/bpe/vocab.$TGT.tmp" \
      2>"$OUT/logs/learn-bpe.log" || die "subword-nmt failed: see $OUT/logs/learn-bpe.log"
    for f in codes "vocab.$SRC" "vocab.$TGT"; do mv "$OUT/bpe/$f.tmp" "$OUT/bpe/$f"; done
  else
    for l in "${LANGS[@]}"; do
      "$SUBWORD_NMT" learn-bpe --input "$OUT/text/train.$l" --symbols "$MERGES" \
        --num-workers "$WORKERS" --output "$OUT/bpe/codes.$l.tmp" \
        2>"$OUT/logs/learn-bpe.$l.log" || die "subword-nmt failed: see $OUT/logs/learn-bpe.$l.log"
      mv "$OUT/bpe/codes.$l.tmp" "$OUT/bpe/codes.$l"
    done
  fi
  finish_step bpe-learn "$CONFIG"
fi

# 3. Apply BPE to every split (fairseq_mmt_adv/recipes/bpe.py: one process, subword-nmt's BPE).
if start_step bpe-apply "$CONFIG" "apply BPE to ${#FSPLITS[@]} splits x $PAIR"; then
  jobs=()
  for i in "${!FSPLITS[@]}"; do
    for l in "${LANGS[@]}"; do
      jobs+=("$(codes_file "$l")" "$OUT/text/${FSPLITS[$i]}.$l" "$OUT/text/${FSPLITS[$i]}.bpe.$l")
    done
  done
  "$PY" -m fairseq_mmt_adv.recipes.bpe --prog "$PROG" --workers "$WORKERS" "${jobs[@]}" || exit 1
  for i in "${!FSPLITS[@]}"; do
    for l in "${LANGS[@]}"; do
      out=$OUT/text/${FSPLITS[$i]}.bpe.$l
      n=$(count_lines "$out")
      [[ $n == "${SENTENCES[${MSPLITS[$i]}]}" ]] \
        || { rm -f "$out"; die "$out had $n lines, expected ${SENTENCES[${MSPLITS[$i]}]}: rerun"; }
    done
  done
  finish_step bpe-apply "$CONFIG"
fi

# 4. Binarize with separate source and target dictionaries, or one joined dictionary.
DICT_FLAGS=()
DICT_KIND="separate dictionaries"
if [[ $JOINED_DICT == 1 ]]; then DICT_FLAGS=(--joined-dictionary); DICT_KIND="joined dictionary"; fi
if start_step binarize "$CONFIG" "fairseq-preprocess $SRC -> $TGT ($DICT_KIND)"; then
  tests=()
  for s in "${FSPLITS[@]:2}"; do tests+=("$OUT/text/$s.bpe"); done
  testpref=$(IFS=,; echo "${tests[*]}")
  tmp=$OUT/.binarize.tmp
  rm -rf "$tmp"
  "$FAIRSEQ_PREPROCESS" --source-lang "$SRC" --target-lang "$TGT" \
    --trainpref "$OUT/text/train.bpe" --validpref "$OUT/text/valid.bpe" --testpref "$testpref" \
    --destdir "$tmp" --workers "$WORKERS" "${DICT_FLAGS[@]}" >"$OUT/logs/fairseq-preprocess.log" 2>&1 \
    || die "fairseq-preprocess failed: see $OUT/logs/fairseq-preprocess.log"
  mv "$tmp/preprocess.log" "$OUT/logs/preprocess.log"
  mv "$tmp"/* "$OUT"/
  rmdir "$tmp"
  finish_step binarize "$CONFIG"
fi

# 5. splits.tsv: fairseq split name -> Multi30K split name, sentences.
if start_step splits "$CONFIG" "write splits.tsv"; then
  {
    printf 'split\tmulti30k\tsentences\n'
    for i in "${!FSPLITS[@]}"; do
      printf '%s\t%s\t%s\n' "${FSPLITS[$i]}" "${MSPLITS[$i]}" "${SENTENCES[${MSPLITS[$i]}]}"
    done
  } >"$OUT/splits.tsv.tmp"
  mv "$OUT/splits.tsv.tmp" "$OUT/splits.tsv"
  finish_step splits "$CONFIG"
fi

# 6. Vocabulary sizes beside the paper's (joint BPE, 10000 merges, official tokenization).
declare -A PAPER=([en-de]="5204 7067" [en-fr]="5835 6577")

compare_with_paper() {  # compare_with_paper SIDE LANG DICT_LINES BPE_TYPES PAPER: one sentence
  local padding=$(($3 - $4))
  if [[ $5 == n/a ]]; then
    echo "# $1 ($2): the paper gives no size for $PAIR."
  elif (($5 == $4 + 5)); then
    echo "# $1 ($2): the paper's $5 is the $4 BPE types found here + 5: the paper counts 5" \
      "entries beyond the BPE types (special symbols of its toolkit, it seems); fairseq's" \
      "dict.$2.txt has $3 lines ($4 types + $padding padding): the BPE vocabulary is the paper's."
  else
    echo "# $1 ($2): the paper's $5 is not the $4 BPE types found here + 5, as it is for the" \
      "official settings: other BPE settings, another subword-nmt version or other data give" \
      "other BPE types."
  fi
}

if start_step vocab "$CONFIG" "write vocab_sizes.txt"; then
  read -r paper_src paper_tgt <<<"${PAPER[$PAIR]:-n/a n/a}"
  rows=()
  notes=()
  for side in source target; do
    if [[ $side == source ]]; then l=$SRC paper=$paper_src; else l=$TGT paper=$paper_tgt; fi
    lines=$(count_lines "$OUT/dict.$l.txt")
    padding=$(grep -c '^madeupword[0-9]* 0$' "$OUT/dict.$l.txt" || true)
    rows+=("$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$side" "$l" "$lines" "$((lines - padding))" \
      "$padding" "$((lines + 4))" "$paper")")
    notes+=("$(compare_with_paper "$side" "$l" "$lines" "$((lines - padding))" "$paper")")
  done
  {
    printf '# %s, %s BPE with %s merges, %s tokenization\n' "$PAIR" "$BPE_KIND" "$MERGES" \
      "$TOKENIZATION"
    printf 'side\tlang\tdict_lines\tbpe_types\tpadding\tlen_dictionary\tpaper\n'
    printf '%s\n' "${rows[@]}"
    cat <<'EOF'
# dict_lines: lines of dict.LANG.txt = the BPE types of the train split (bpe_types) plus the
# "madeupwordNNNN" entries (padding) that fairseq-preprocess adds so that, with its 4 special
# symbols <s> <pad> </s> <unk> (not listed in the file), the dictionary size is a multiple of 8
# (--padding-factor 8); len_dictionary = dict_lines + 4 is the embedding size of the model.
# The paper's sizes are for joint BPE with 10000 merges on the official tokenized files.
EOF
    printf '%s\n' "${notes[@]}"
  } >"$OUT/vocab_sizes.txt.tmp"
  mv "$OUT/vocab_sizes.txt.tmp" "$OUT/vocab_sizes.txt"
  finish_step vocab "$CONFIG"
fi

# 7. Visual features: link (or convert to float32) DIR/<pattern> as OUT/<fairseq split>.npy.
# The task's own checks of a feature file (fairseq_mmt_adv/recipes/features.py), train first.
link_features() {  # link_features SRC DST ROWS [SRC DST ROWS ...]
  "$PY" -m fairseq_mmt_adv.recipes.features --prog "$PROG" link "$@" || exit 1
}

if [[ -z $FEATURES ]]; then
  log "[${#STEPS[@]}/${#STEPS[@]}] visual features: no --features given, skipped"
else
  [[ -d $FEATURES ]] || die "--features $FEATURES is not a directory"
  FEATURES=$(cd "$FEATURES" && pwd)
  if start_step features "$CONFIG $FEATURES/$FEATURE_PATTERN" "link visual features from $FEATURES"
  then
    feature_jobs=()
    for i in "${!MSPLITS[@]}"; do
      f=$FEATURES/${FEATURE_PATTERN//\{split\}/${MSPLITS[$i]}}
      [[ -f $f ]] || die "missing feature file $f for split ${MSPLITS[$i]} (fairseq split" \
        "${FSPLITS[$i]}): --features needs one file per split: ${MSPLITS[*]} (named by" \
        "--feature-pattern '$FEATURE_PATTERN')"
      feature_jobs+=("$f" "$OUT/${FSPLITS[$i]}.npy" "${SENTENCES[${MSPLITS[$i]}]}")
    done
    link_features "${feature_jobs[@]}"
    finish_step features "$CONFIG $FEATURES/$FEATURE_PATTERN"
  fi
fi

# What translating new captions needs beside the dictionaries: OUT/preprocessing.json
# (fairseq_mmt_adv/translation/text_pipeline.py; rewritten only when it changes).
lower=()
[[ $TOKENIZATION == moses && $LOWERCASE == 0 ]] || lower=(--lowercase)
codes=$(codes_file "$SRC")
"$PY" -m fairseq_mmt_adv.translation.text_pipeline write "$OUT" --source-lang "$SRC" --target-lang "$TGT" \
  "${lower[@]}" --tokenizer moses --bpe-codes "${codes#"$OUT"/}" || exit 1

cat "$OUT/vocab_sizes.txt"
log "done: fairseq data in $OUT (splits in $OUT/splits.tsv)"
