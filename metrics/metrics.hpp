// metrics/: the run log a user can read (no LibTorch).
//
// A run directory holds three append-only JSON Lines files (docs/CURVES.md documents every key):
//   metrics.jsonl  one line per training step: {"step", "time", "reward/mean", "kl", ...}
//   samples.jsonl  one line per completion:    {"step", "group", "sample", "prompt", "completion",
//                                               "reward", "parts", "reason", ...}
//   events.jsonl   one line per guard firing, rollback or stop: {"step", "time", "event", ...}
// and TensorBoard event files (events.out.tfevents.*). This folder owns:
//   run_log.hpp   RunLog, the writer the trainer appends to (crash-safe per line, resumable);
//   tensorboard.hpp  TensorBoard event files: the writer RunLog feeds, and a reader;
//   reader.hpp    robust readers of both files, metric series and EMA smoothing;
//   chart.hpp     the renderers: Unicode terminal charts, standalone SVG and HTML;
//   commands.hpp  the logic of `r1 curves` and `r1 samples` (cli/cmd_curves.cpp only parses flags).
#pragma once

#include "metrics/chart.hpp"
#include "metrics/commands.hpp"
#include "metrics/reader.hpp"
#include "metrics/run_log.hpp"
