"""Every advantage estimator and loss term on small hand-computed tensors: deleting or flipping any one fails here."""

from __future__ import annotations

import math

import pytest
import torch

from agents import metrics as M
from agents.rl.estimators import (
    group_advantages, leave_one_out, missing_eos_penalty, returns_to_go, token_rewards, varied_groups,
)
from agents.rl.dapo import DAPOConfig
from agents.rl.grpo import GRPO, GRPOConfig
from agents.rl.gspo import GSPOConfig
from agents.rl.losses import (
    aggregate, clipped_surrogate, clipped_value_loss, dpo_loss, preference_log_ratios, sequence_log_ratio,
)
from agents.rl.on_policy import MiniBatch, ScoredBatch
from agents.rl.ppo import PPO, PPOConfig
from agents.rl.reinforce import Reinforce, ReinforceConfig
from agents.rl.reinforce_pp import ReinforcePP, ReinforcePPConfig
from agents.rl.rloo import RLOO, RLOOConfig

T = torch.tensor


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual.float(), torch.as_tensor(expected).float(), rtol=1e-4, atol=1e-4)


def scored(score, kl=None, mask=None, values=None, group_size=1) -> ScoredBatch:
    score = T(score)
    mask = T(mask) if mask is not None else torch.ones(len(score), 1)
    kl = T(kl) if kl is not None else torch.zeros_like(mask)
    return ScoredBatch(score=score, mask=mask, logprobs=torch.zeros_like(mask), kl=kl,
                       values=T(values) if values is not None else None, group_size=group_size,
                       samples=len(score), mean=lambda x: float(x.mean()))


# ----------------------------------------------------------------------------------- rewards
def test_missing_eos_penalty_and_token_rewards():
    assert missing_eos_penalty(T([1.0, 1.0]), T([True, False]), 0.5).tolist() == [1.0, 0.5]
    mask = T([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    kl = T([[0.1, 0.2, 0.3], [0.5, 9.0, 9.0]])
    rewards = token_rewards(T([1.0, 2.0]), kl, 0.5, mask)  # -0.5 kl everywhere, the score at the last real token
    close(rewards, [[-0.05, -0.1, 1 - 0.15], [2 - 0.25, 0.0, 0.0]])
    assert returns_to_go(T([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), mask).tolist() == [[6.0, 5.0, 3.0], [4.0, 0.0, 0.0]]


def test_group_advantages_per_scale_rewards():
    scores = T([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0])
    none = group_advantages(scores, 4, "none")
    assert none.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 1.0, 1.0, -1.0, -1.0])
    group = group_advantages(scores, 4, "group")  # std of [1,0,0,0] = 0.5, of [2,2,0,0] = 1.1547
    assert group.tolist() == pytest.approx([0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001,
                                            *(x / (2 / math.sqrt(3) + 1e-4) for x in (1.0, 1.0, -1.0, -1.0))], rel=1e-4)
    batch = group_advantages(scores, 4, "batch")
    assert batch.tolist() == pytest.approx((none / (scores.std() + 1e-4)).tolist())


def test_leave_one_out_and_dynamic_sampling_filter():
    assert leave_one_out(T([1.0, 0.0, 0.0, 0.0, 3.0, 1.0]), 2).tolist() == [1.0, -1.0, 0.0, 0.0, 2.0, -2.0]
    assert varied_groups(T([1.0, 1.0, 0.0, 1.0, 0.0, 0.0]), 2).tolist() == [False, False, True, True, False, False]
    dapo = GRPO(DAPOConfig(batch_size=4, num_generations=2))  # the algorithm keeps what the filter keeps
    batch = scored([1.0, 1.0, 0.0, 1.0], group_size=2)
    assert dapo.keep(batch).tolist() == [False, False, True, True] and batch.metrics[M.KEPT_FRACTION] == 0.5
    assert GRPO(GRPOConfig(batch_size=4, num_generations=2)).keep(batch) is None


def test_dapo_and_gspo_defaults_are_their_papers():
    dapo = DAPOConfig()  # Yu et al. 2025: clip-higher 0.2 / 0.28, dynamic sampling, token-level loss, no KL
    assert (dapo.epsilon, dapo.epsilon_high, dapo.dynamic_sampling, dapo.loss_type, dapo.beta) == (
        0.2, 0.28, True, "dapo", 0.0)
    gspo = GSPOConfig()  # Zheng et al. 2025: sequence-level ratio clipped to [1 - 3e-4, 1 + 4e-4], no KL
    assert (gspo.importance_sampling_level, gspo.epsilon, gspo.epsilon_high, gspo.beta) == ("sequence", 3e-4, 4e-4, 0.0)


def test_each_algorithm_turns_scores_into_its_advantages():
    # REINFORCE: return = score - kl_coef * sum KL; baseline = moving average (first batch: its own mean)
    reinforce = Reinforce(ReinforceConfig(kl_coef=0.5, baseline_decay=0.5, batch_size=2))
    adv, _ = reinforce.advantages(scored([1.0, 3.0], kl=[[2.0], [0.0]]))
    assert adv.tolist() == [-1.5, 1.5] and reinforce.baseline.value == 1.5  # returns [0, 3]
    adv, _ = reinforce.advantages(scored([3.0, 3.0]))
    assert adv.tolist() == [1.5, 1.5] and reinforce.baseline.value == 2.25  # 0.5 * 1.5 + 0.5 * 3
    # RLOO: the KL enters the return before leave-one-out
    rloo = RLOO(RLOOConfig(kl_coef=0.5, batch_size=2, num_generations=2))
    assert rloo.advantages(scored([1.0, 1.0], kl=[[2.0], [0.0]], group_size=2))[0].tolist() == [-1.0, 1.0]
    # GRPO: the KL is not in the advantage (beta is a loss term), unless kl_coef says so
    grpo = GRPO(GRPOConfig(batch_size=2, num_generations=2, scale_rewards="none"))
    assert grpo.advantages(scored([1.0, 0.0], kl=[[5.0], [0.0]], group_size=2))[0].tolist() == [0.5, -0.5]
    grpo = GRPO(GRPOConfig(batch_size=2, num_generations=2, scale_rewards="none", kl_coef=0.5))
    returns_equal = scored([1.0, 0.0], kl=[[2.0], [0.0]], group_size=2)  # returns 1 - 0.5 * 2 = 0 and 0
    assert grpo.advantages(returns_equal)[0].tolist() == [0.0, 0.0]
    # REINFORCE++: return-to-go with the token KL penalty, whitened over the whole batch
    pp = ReinforcePP(ReinforcePPConfig(kl_coef=1.0, batch_size=2))
    adv, _ = pp.advantages(scored([1.0, 0.0], kl=[[0.0, 0.0], [0.0, 1.0]], mask=[[1.0, 1.0], [1.0, 1.0]]))
    raw = T([[1.0, 1.0], [-1.0, -1.0]])  # returns-to-go: [1, 1] and [-1, -1]
    close(adv, (raw - raw.mean()) / raw.std())


def test_ppo_advantages_are_whitened_gae_of_kl_penalised_rewards():
    config = PPOConfig(kl_coef=0.5, gamma=1.0, lam=1.0, batch_size=2, num_mini_batches=1)
    ppo = PPO(config)
    batch = scored([1.0, 0.0], kl=[[0.2, 0.2], [0.0, 0.0]], mask=[[1.0, 1.0], [1.0, 1.0]], values=[[0.0, 0.0], [0.0, 0.0]])
    adv, returns = ppo.advantages(batch)
    # rewards [-0.1, 0.9], [0, 0]; with gamma = lam = 1 and zero values, returns are the reward-to-go
    close(returns, [[0.8, 0.9], [0.0, 0.0]])
    close(adv, (returns - returns.mean()) / returns.std())
    assert batch.metrics[M.KL_COEF] == 0.5
    whitened = PPO(PPOConfig(kl_coef=0.5, gamma=1.0, lam=1.0, whiten_rewards=True, batch_size=2, num_mini_batches=1))
    assert not torch.allclose(whitened.advantages(batch)[1], returns)  # whiten_rewards changes the targets


def test_adaptive_kl_coefficient_moves_towards_the_target():
    ppo = PPO(PPOConfig(kl_coef=0.1, kl_target=1.0, kl_horizon=10, batch_size=2, num_mini_batches=1))
    batch = scored([0.0, 0.0], kl=[[5.0], [5.0]], values=[[0.0], [0.0]])
    ppo.advantages(batch)  # KL 5 >> target 1: +20% x 2 samples / 10
    assert ppo.kl_controller.value == pytest.approx(0.1 * 1.04)


# ------------------------------------------------------------------------------------ losses
def test_clipped_surrogate_takes_the_pessimistic_branch():
    log_ratio = torch.log(T([1.5, 0.5, 1.1, 0.7]))
    adv = T([1.0, -1.0, 1.0, 1.0])
    loss, clipped = clipped_surrogate(log_ratio, adv, 0.2, 0.2)
    assert loss.tolist() == pytest.approx([-1.2, 0.8, -1.1, -0.7])
    assert clipped.tolist() == [1.0, 1.0, 0.0, 0.0]
    loss_high, _ = clipped_surrogate(log_ratio, adv, 0.2, 0.28)  # clip-higher: 1.5 clips at 1.28
    assert loss_high.tolist() == pytest.approx([-1.28, 0.8, -1.1, -0.7])


def test_gspo_ratio_is_the_length_normalised_sequence_ratio():
    log_ratio = T([[0.2, 0.4, 9.0], [0.3, 0.0, 0.0]])
    mask = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    close(sequence_log_ratio(log_ratio, mask), [[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]])


def test_value_loss_is_clipped_around_the_old_value():
    loss = clipped_value_loss(T([2.0, 0.5]), T([0.0, 0.0]), T([1.0, 1.0]), 0.2)
    # first: unclipped (2-1)^2 = 1, clipped (0.2-1)^2 = 0.64 -> max 1; second: 0.25 vs 0.64 -> 0.64
    assert loss.tolist() == pytest.approx([0.5, 0.32])


def test_aggregate_per_loss_type():
    x = T([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    mask = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert float(aggregate(x, mask, "grpo", 3, 2, 4)) == pytest.approx((2.0 + 2.0) / 2)
    assert float(aggregate(x, mask, "dr_grpo", 3, 2, 4)) == pytest.approx(6.0 / 8)
    assert float(aggregate(x, mask, "dapo", 3, 2, 4)) == pytest.approx(6.0 / 3)
    # micro-batches sum to the minibatch value: rows 0 and 1 apart, counted against the whole minibatch
    split = aggregate(x[:1], mask[:1], "dapo", 3, 2, 4) + aggregate(x[1:], mask[1:], "dapo", 3, 2, 4)
    assert float(split) == pytest.approx(2.0)


def test_preference_log_ratios_sum_for_dpo_and_average_for_ipo():
    # rows: chosen (2 real tokens), rejected (1 real token + padding); per-token log(pi / pi_ref): [0.5, -0.1], [-0.4, x]
    logp, ref = T([[-1.0, -2.0], [-3.0, -9.0]]), T([[-1.5, -1.9], [-2.6, 0.0]])
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    chosen, rejected = preference_log_ratios(logp, ref, mask, length_normalised=False)
    close(chosen, [0.4]), close(rejected, [-0.4])
    chosen, rejected = preference_log_ratios(logp, ref, mask, length_normalised=True)
    close(chosen, [0.2]), close(rejected, [-0.4])


def test_dpo_and_ipo_losses():
    chosen, rejected = T([1.0]), T([0.0])
    assert float(dpo_loss(chosen, rejected, 0.5, "sigmoid")) == pytest.approx(-math.log(1 / (1 + math.exp(-0.5))))
    assert float(dpo_loss(chosen, rejected, 0.5, "ipo")) == pytest.approx((1.0 - 1.0) ** 2)
    assert float(dpo_loss(chosen, rejected, 0.25, "ipo")) == pytest.approx((1.0 - 2.0) ** 2)
    assert float(dpo_loss(rejected, chosen, 0.5, "sigmoid")) > float(dpo_loss(chosen, rejected, 0.5, "sigmoid"))


def minibatch(**kw) -> MiniBatch:
    base = dict(logprobs=torch.log(T([[0.6, 0.5]])), old_logprobs=torch.log(T([[0.5, 0.5]])), ref_logprobs=None,
                advantages=T([[1.0, 1.0]]), mask=T([[1.0, 1.0]]), entropy=T([[0.4, 0.2]]), tokens=2.0, rows=1,
                max_tokens=2)
    return MiniBatch(**{**base, **kw})


def test_the_shared_loss_combines_clip_and_entropy_bonus():
    algo = GRPO(GRPOConfig(batch_size=2, num_generations=2, epsilon=0.1, entropy_coef=0.5, beta=0.0))
    loss, logged = algo.loss(minibatch())
    # ratios 1.2 (clipped to 1.1) and 1.0: policy loss mean(-1.1, -1.0) = -1.05; entropy mean 0.3
    assert float(logged[M.POLICY_LOSS]) == pytest.approx(-1.05)
    assert float(logged[M.CLIPFRAC]) == pytest.approx(0.5)
    assert float(loss) == pytest.approx(-1.05 - 0.5 * 0.3)
    assert float(logged[M.APPROX_KL]) == pytest.approx(0.5 * math.log(1.2) ** 2 / 2)


def test_grpo_adds_the_k3_kl_term_and_gspo_clips_per_sequence():
    ref = torch.log(T([[0.5, 0.25]]))
    algo = GRPO(GRPOConfig(batch_size=2, num_generations=2, epsilon=10.0, beta=0.5))
    mb = minibatch(old_logprobs=torch.log(T([[0.6, 0.5]])), ref_logprobs=ref)
    loss, logged = algo.loss(mb)
    r = T([0.5 / 0.6, 0.25 / 0.5])  # k3 = (r - 1) - log r with r = ref / policy
    k3 = float(((r - 1) - torch.log(r)).mean())
    assert float(logged[M.KL_LOSS]) == pytest.approx(k3, rel=1e-5)
    assert float(loss) == pytest.approx(-1.0 + 0.5 * k3, rel=1e-5)
    gspo = GRPO(GSPOConfig(batch_size=2, num_generations=2, epsilon=0.05, epsilon_high=0.05))
    _, logged = gspo.loss(minibatch())  # sequence ratio exp(mean(log 1.2, 0)) = 1.095 -> clipped at 1.05
    assert float(logged[M.POLICY_LOSS]) == pytest.approx(-1.05)
    assert float(logged[M.CLIPFRAC]) == 1.0


def test_ppo_loss_adds_the_weighted_clipped_value_loss():
    ppo = PPO(PPOConfig(vf_coef=0.5, cliprange_value=0.2, batch_size=2, num_mini_batches=1))
    mb = minibatch(logprobs=torch.log(T([[0.5, 0.5]])), values=T([[2.0, 0.5]]), old_values=T([[0.0, 0.0]]),
                   returns=T([[1.0, 1.0]]))
    loss, logged = ppo.loss(mb)
    assert float(logged[M.VALUE_LOSS]) == pytest.approx((0.5 + 0.32) / 2)
    assert float(loss) == pytest.approx(-1.0 + 0.5 * 0.41)
