"""Metric names every trainer logs and every benchmark reads, written once.

Why constants: a misspelt metric name is not an error anywhere — the leaderboard just finds no
value — so trainers, records and leaderboards all import the names from here. The names follow
TRL and CleanRL, so their users recognise them in TensorBoard and in ``metrics.jsonl``.
"""

from __future__ import annotations

REWARD = "objective/reward"  # the optimised (proxy) reward
GOLD_REWARD = "objective/gold_reward"  # the reward we trust (the task's verifier), never optimised
KL = "objective/kl"  # KL(policy || reference) per completion, summed over tokens
KL_COEF = "objective/kl_coef"
SCORES_WITH_EOS_PENALTY = "objective/scores_with_eos_penalty"
PROXY_GOLD_GAP = "objective/proxy_gold_gap"  # mean(proxy - gold)
PROXY_GOLD_CORR = "objective/proxy_gold_corr"  # Pearson correlation of proxy and gold over the batch
ENSEMBLE_MEAN = "objective/ensemble_mean"
ENSEMBLE_STD = "objective/ensemble_std"  # mean over samples of the members' std: their disagreement
ENSEMBLE_LOWER = "objective/ensemble_lower_bound"  # mean over samples of (mean - k std)
HACKING_ALARM = "objective/hacking_alarm"  # 1.0 on an iteration where the stop rule fired
ENTROPY = "policy/entropy"
CLIPFRAC = "policy/clipfrac"
APPROX_KL = "policy/approx_kl"
UPDATE_FRACTION = "policy/update_fraction"  # optimizer steps taken / planned (below 1: stopped at target_kl)
POLICY_LOSS = "loss/policy"
VALUE_LOSS = "loss/value"
KEPT_FRACTION = "policy/kept_fraction"  # DAPO: share of completions left after the dynamic-sampling filter
KL_LOSS = "loss/kl"  # the KL term of the loss (GRPO's beta x k3)
TRAIN_LOSS = "loss/train"
EXPLAINED_VARIANCE = "value/explained_variance"
EPISODE_LENGTH = "episode/length"
EOS_FRACTION = "episode/eos_fraction"
TOKENS_PER_S = "perf/tokens_per_s"
SAMPLES_PER_S = "perf/samples_per_s"
EVAL_LOSS = "eval/loss"
EVAL_ACCURACY = "eval/accuracy"
EVAL_PERPLEXITY = "eval/perplexity"
EVAL_PAIRWISE_ACCURACY = "eval/pairwise_accuracy"
EVAL_REWARD_MARGIN = "eval/reward_margin"  # reward model: mean(r_chosen - r_rejected) on held-out pairs
EVAL_REWARD_MEAN = "eval/reward_mean"
EVAL_DISTINCT_1 = "eval/distinct_1"
EVAL_DISTINCT_2 = "eval/distinct_2"
DPO_MARGIN = "rewards/margins"  # DPO: beta x (chosen - rejected) log-ratio margin, as TRL logs it
DPO_ACCURACY = "rewards/accuracies"  # DPO: fraction of pairs whose chosen completion has the larger implicit reward
DPO_LOGPS_CHOSEN = "logps/chosen"  # DPO: mean summed log-prob of the chosen completions under the policy (TRL's name)
DPO_LOGPS_REJECTED = "logps/rejected"  # DPO: the same for the rejected ones; both falling is likelihood displacement
