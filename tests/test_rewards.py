"""Reward models: specs, composites, normalisation, learned RMs and bad reward outputs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

import llm_gym
from llm_gym.rewards import CompositeReward, LearnedReward, NormalizedReward, make_reward
from llm_gym.rewards.registry import available_rewards

META = [{"answer": "42", "reference": "the cat sat on the mat"}] * 2


def test_rule_rewards():
    assert make_reward("exact_match")(["p"] * 2, [" 42 ", "43"], META).tolist() == [1, 0]
    assert make_reward("numeric_match:tolerance=0.5")(["p"] * 2, ["it is 42.3", "none"], META).tolist() == [1, 0]
    assert make_reward("length:min_chars=2,max_chars=3")(["p"] * 2, ["abc", "abcd"], META).tolist() == [1, 0]
    assert make_reward(r"format:pattern=\d+")(["p"] * 2, ["123", "12a"], META).tolist() == [1, 0]


def test_reference_metrics_rank_the_reference_first():
    for spec in ["bleu", "chrf", "rouge", "rouge:variant=rouge1"]:
        scores = make_reward(spec)(["p"] * 2, ["the cat sat on the mat", "a dog ran"], META)
        assert scores[0] == pytest.approx(1.0) and scores[1] < 0.5, spec


def test_verifier_uses_the_task():
    task = llm_gym.make_task("arithmetic")
    assert make_reward("verifier", task)(["1+1="], ["2"], [{"answer": "2"}]).tolist() == [1.0]
    with pytest.raises(ValueError, match="needs a task"):
        make_reward("verifier")


def test_weighted_sum_spec_reports_components():
    reward = make_reward("0.5*exact_match + 2*length:max_chars=2")
    assert isinstance(reward, CompositeReward)
    out = reward.score(["p"] * 2, ["42", "abc"], META)
    assert out.total.tolist() == [2.5, 0.0]
    assert {k: v.tolist() for k, v in out.components.items()} == {"exact_match": [1, 0], "length": [1, 0]}
    mapping = make_reward({"exact_match": 1.0, "bleu": 0.5})
    assert set(mapping.score(["p"], ["42"], META[:1]).components) == {"exact_match", "bleu"}


def test_composite_components_reach_the_env_info():
    env = gym.make("llm_gym/Arithmetic-v0", granularity="sequence", reward="0.9*exact_match + 0.1*length:max_chars=3")
    _, info = env.reset(seed=0)
    answer = str(eval(info["prompt"][:-1]))
    _, reward, *_, info = env.step(answer)
    assert reward == pytest.approx(1.0)
    assert info["reward_components"] == {"exact_match": 1.0, "length": 1.0} and info["gold_reward"] == 1.0


def test_normalized_reward_standardises_with_running_stats():
    raw = make_reward(lambda p, c, m: [float(x) for x in c])
    norm = NormalizedReward(raw, clip=None)
    for _ in range(50):
        norm(["p"] * 4, ["0", "1", "2", "3"], [{}] * 4)
    scores = norm(["p"] * 4, ["0", "1", "2", "3"], [{}] * 4)
    assert abs(scores.mean()) < 1e-3 and scores.std() == pytest.approx(1.0, rel=1e-2)


@pytest.mark.parametrize(
    ("output", "message"),
    [([1.0, float("nan")], "non-finite"), ([1.0], "returned shape"), ([[1.0, 2.0]], "returned shape")],
)
def test_bad_reward_outputs_are_named_errors(output, message):
    reward = make_reward(lambda p, c, m: output)
    with pytest.raises(ValueError, match=message):
        reward.score(["p"] * 2, ["a", "b"], [{}] * 2)


def test_nan_reward_inside_an_env_names_the_reward():
    def broken(prompts, completions, metadata):
        return [float("nan")] * len(prompts)

    env = gym.make("llm_gym/Count-v0", granularity="sequence", reward=broken)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="'broken' returned nan"):
        env.step("1")


def test_a_weight_may_stand_apart_from_its_star():
    spaced, tight = make_reward("0.5 * exact_match"), make_reward("0.5*exact_match")
    assert spaced.components == {"exact_match": (0.5, spaced.components["exact_match"][1])}
    assert spaced(["1+1="], ["2"], [{"answer": "2"}]).tolist() == tight(["1+1="], ["2"], [{"answer": "2"}]).tolist()


def test_unknown_reward_spec_lists_known_ones():
    with pytest.raises(ValueError, match="unknown reward spec 'nope'.*exact_match"):
        make_reward("nope")
    with pytest.raises(ValueError, match="unknown reward spec"):
        gym.make("llm_gym/Arithmetic-v0", reward="nope")
    with pytest.raises(ValueError, match="not key=value"):
        make_reward("length:7")


@pytest.fixture(scope="module")
def tiny_reward_model_dir(tmp_path_factory, tiny_model_dir):
    tokenizer = llm_gym.models.load_tokenizer(tiny_model_dir)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2, n_positions=32, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rm")
    GPT2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_learned_reward_scores_in_batches_and_truncates_left(tiny_reward_model_dir):
    reward = LearnedReward(tiny_reward_model_dir, batch_size=2)
    prompts, completions = ["1+2=", "10+20=", "3+4="], ["3", "30", "7"]
    scores = reward(prompts, completions, [{}] * 3)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    one_by_one = [reward([p], [c], [{}])[0] for p, c in zip(prompts, completions)]
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-4, atol=1e-5)
    long_prompt = "1" * 100 + "+2="
    assert np.isfinite(reward([long_prompt], ["3"], [{}])).all()  # 104 chars > 32 positions: truncated
    assert reward.max_length == 32


def test_learned_reward_spec_in_env(tiny_reward_model_dir, tiny_model_dir):
    env = gym.make(
        "llm_gym/Arithmetic-v0", granularity="sequence", tokenizer=str(tiny_model_dir),
        reward=f"learned:path={tiny_reward_model_dir}",
    )
    env.reset(seed=0)
    _, reward, *_, info = env.step("12")
    assert np.isfinite(reward) and set(info["reward_components"]) == {"learned"} and "gold_reward" in info


def test_learned_reward_missing_directory():
    with pytest.raises(FileNotFoundError, match="reward model directory not found: /no/such"):
        make_reward("learned:path=/no/such")


def test_builtin_specs_are_listed():
    assert {"exact_match", "numeric_match", "verifier", "bleu", "chrf", "rouge", "learned"} <= set(available_rewards())


# ------------------------------------------------------------------------------ no silent wrong result
def test_same_named_terms_are_each_counted_and_reported():
    reward = make_reward("0.5*length:max_chars=5 + 0.5*length:max_chars=10")
    out = reward.score(["p"] * 2, ["abcdefg", "abc"], [{}] * 2)
    assert {k: v.tolist() for k, v in out.components.items()} == {
        "length:max_chars=5": [0.0, 1.0],
        "length:max_chars=10": [1.0, 1.0],
    }
    assert out.total.tolist() == [0.5, 1.0]  # was 1.0 for the first: one term silently replaced the other
    env = gym.make("llm_gym/Arithmetic-v0", granularity="sequence", reward="0.5*length:max_chars=1 + 0.5*length")
    env.reset(seed=0)
    _, reward_value, *_, info = env.step("123")
    assert reward_value == 0.5 and info["reward_components"] == {"length:max_chars=1": 0.0, "length": 1.0}


def test_a_term_given_twice_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"reward spec '0.5\*length \+ 0.5\*length': term 'length' appears twice"):
        make_reward("0.5*length + 0.5*length")


def test_misspelled_reward_argument_names_the_spec_and_the_accepted_arguments():
    with pytest.raises(TypeError, match=r"reward spec 'length:max_char=5': unknown argument 'max_char'; 'length' accepts: min_chars, max_chars"):
        make_reward("length:max_char=5")
    with pytest.raises(TypeError, match=r"reward spec 'learned:pth=x': .*'pth'.*'learned' accepts: path, device"):
        gym.make("llm_gym/Arithmetic-v0", reward="0.5*verifier + 0.5*learned:pth=x")
    with pytest.raises(ValueError, match=r"reward spec 'length:7': option '7' is not key=value; 'length' accepts: min_chars"):
        make_reward("length:7")
    with pytest.raises(ValueError, match=r"reward spec 'x\*length \+ length:max_chars=3': weight 'x'"):
        make_reward("x*length + length:max_chars=3")


def test_learned_reward_without_a_pad_token_pads_like_its_config_or_with_eos(tiny_reward_model_dir, tmp_path, tiny_model_dir):
    """Falls back as the policy's ``load_tokenizer`` does; before, the first batched step() failed."""
    import shutil

    from transformers import AutoTokenizer

    path = tmp_path / "rm_no_pad"
    shutil.copytree(tiny_reward_model_dir, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(path)
    assert AutoTokenizer.from_pretrained(path).pad_token_id is None
    reward = LearnedReward(path)
    assert reward.tokenizer.pad_token_id == reward.model.config.pad_token_id == 0  # the id its config skips
    scores = reward(["1+2=", "10+20="], ["3", "30"], [{}] * 2)  # two lengths: needs padding
    np.testing.assert_allclose(scores, LearnedReward(tiny_reward_model_dir)(["1+2=", "10+20="], ["3", "30"], [{}] * 2),
                               rtol=1e-4, atol=1e-5)  # it pads with the id its config skips
    config = (path / "config.json").read_text().replace(f'"pad_token_id": {reward.tokenizer.pad_token_id}',
                                                        '"pad_token_id": null')
    (path / "config.json").write_text(config)
    no_pad_anywhere = LearnedReward(path)
    assert no_pad_anywhere.tokenizer.pad_token == no_pad_anywhere.tokenizer.eos_token
    assert no_pad_anywhere.model.config.pad_token_id == no_pad_anywhere.tokenizer.eos_token_id
    assert np.isfinite(no_pad_anywhere(["1+2=", "10+20="], ["3", "30"], [{}] * 2)).all()


def test_learned_reward_whose_config_and_tokenizer_pad_differently_is_refused(tiny_reward_model_dir, tmp_path):
    import shutil

    path = tmp_path / "rm_two_pads"
    shutil.copytree(tiny_reward_model_dir, path)
    config = (path / "config.json").read_text().replace('"pad_token_id": 0', '"pad_token_id": 3')
    (path / "config.json").write_text(config)
    with pytest.raises(ValueError, match=r"rm_two_pads: its config pads with id 3 but its tokenizer with 0"):
        LearnedReward(path)
