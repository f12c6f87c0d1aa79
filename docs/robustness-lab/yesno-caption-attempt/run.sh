#!/bin/bash
set -e
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=1 VITTLE_FEATURE_CACHE=runs/lab/features
B=.venv/bin
$B/python docs/robustness-lab/yesno-caption-attempt/make_data.py
$B/vittle train --recipe tiny-easyvqa-base data.path=runs/caption/captions.json data.synthetic= model.tie_embeddings=true \
  train.max_steps=800 train.output_dir=runs/caption/stage1 train.logging_steps=100
$B/vittle train --recipe tiny-easyvqa-base model.init=runs/caption/stage1 data.path=runs/caption/stage2.json data.synthetic= \
  train.max_steps=1500 train.output_dir=runs/caption/stage2 train.logging_steps=100
$B/vittle eval easyvqa --model cap=runs/caption/stage2 --specs clean --limit-images 300 --out runs/caption/eval
echo DONE
