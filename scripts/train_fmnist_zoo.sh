#!/usr/bin/env bash
# Trains every Fashion-MNIST weight that weights/ ships, in priority order, one after another.
# Finished weights (weights/<model>.fmnist/model.safetensors present) are skipped and interrupted
# runs resume from runs/<model>-fmnist/last.pth, so the script can be re-run until all are done:
#
#   nohup bash scripts/train_fmnist_zoo.sh > runs/train_fmnist_zoo.log 2>&1 &
#   python -m lightnets.hub index        # afterwards: rewrite weights/index.json
#
# Recipe shared by all: SGD momentum 0.9, cosine schedule with 1 warm-up epoch, label smoothing
# 0.1, weight decay 5e-4, batch 128, random crop (pad 2) + horizontal flip, seed 0, small-input
# form of each architecture at 28x28 grayscale. Only the epochs and peak LR differ per model, and
# bf16 autocast (--amp bf16) where it trains faster on a CPU with AMX (VGG, ShuffleNet g=2; not
# depthwise-heavy MobileNets, see lightnets.train.autocast_dtype); float32 everywhere else. Weights
# trained before 2026-11-24 used the old --amp auto, which meant bf16 autocast on a CPU with native
# bf16: to reproduce one of those there, add --amp bf16.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
ONLY=${ONLY:-}   # e.g. ONLY=smallcnn_3x2 to train a single entry

train() {  # train MODEL EPOCHS LR [extra args...]
    local model=$1 epochs=$2 lr=$3; shift 3
    local out=weights/${model}.fmnist
    if [[ -n "$ONLY" && "$ONLY" != "$model" ]]; then return; fi
    if [[ -f $out/model.safetensors ]]; then echo "== $model: done ($out)"; return; fi
    echo "== $model: $epochs epochs, lr $lr $(date -u +%FT%TZ)"
    "$PYTHON" -m lightnets.train --model "$model" --model-arg small_input=true \
        --dataset fashion_mnist --epochs "$epochs" --lr "$lr" --pad 2 --seed 0 \
        --work-dir "runs/${model}-fmnist" --resume --no-progress \
        --output "$out" --tag fmnist "$@"
}

train smallcnn_3x2        15 0.05
train mobilenet_v1_025    40 0.1
train sepcnn_separable    15 0.05
train smallcnn_3x2_dw1    15 0.05
train smallcnn_3x2_dw2    15 0.05
train smallcnn_3x2_dw3    15 0.05
train smallcnn_3x2_dw12   15 0.05
train smallcnn_3x2_dw23   15 0.05
train smallcnn_3x2_dw123  15 0.05
train sepcnn_regular      15 0.05 --fp16-weights
train shufflenet_g3_050    8 0.1
train sepcnn_both         15 0.05
train mobilenet_v1_050    20 0.1
train mobilenet_v1_100    20 0.1 --fp16-weights
train shufflenet_g3       30 0.1 --fp16-weights
train mobilenet_v1_075    25 0.1 --fp16-weights
train shufflenet_g1       20 0.1 --fp16-weights
train shufflenet_g2       20 0.1 --fp16-weights --amp bf16 --compile
train shufflenet_g4       20 0.1 --fp16-weights
train shufflenet_g8       20 0.1 --fp16-weights
train vgg11_bn            15 0.05 --fp16-weights --amp bf16
echo "== all done $(date -u +%FT%TZ)"
