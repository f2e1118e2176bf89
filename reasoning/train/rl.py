"""Stage (c): chemistry rules in the objective — GRPO-style policy optimisation with an RDKit reward.

For each spec a group of answers is sampled with constrained decoding. Each answer gets a reward from
the chemistry core: validity (``validate``), the fraction of spec constraints met (``spec.check``), a
bonus when every constraint is met, a novelty bonus when the molecule is not in the training corpus, and
a penalty per structural-alert warning. Advantages are group-relative, ``(r - mean) / (std + eps)``,
and the loss is ``-advantage * log p(answer)`` over the generated tokens, plus a KL penalty towards the
frozen starting model.

    python -m reasoning.train.rl --init reasoning/checkpoints/compact --traces build/reasoning/traces-0.jsonl \\
        --out build/reasoning/rl --max-minutes 30

>>> reward_for(DesignSpec(properties={"mw": [40, 50]}), "CCO", known=set())
3.2
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from reasoning.decoding import GeneratedText, SmilesBounds, generate_many
from reasoning.grounding import forced_positions
from reasoning.model import ReasoningLM
from reasoning.tokenizer import ReasoningTokenizer, smiles_tokens
from reasoning.traces import render_spec, restate_prefix
from workbench.chem import DesignSpec, validate

__all__ = ["reward_for", "group_advantages", "best_answer_advantages", "sequence_logprobs", "grpo_step", "main"]


def reward_for(
    spec: DesignSpec,
    smiles: str,
    known: set[str],
    alert_penalty: float = 0.05,
    novelty_bonus: float = 0.2,
) -> float:
    """RDKit reward: 0 for an invalid answer; else 1 (valid) + fraction met + 1 if all met + novelty - alerts."""
    report = validate(smiles) if smiles else None
    if report is None or report.molecule is None or not report.ok:
        return 0.0
    checked = spec.check(report.molecule)
    reward = 1.0 + checked.fraction_passed + (1.0 if checked.ok else 0.0)
    if report.molecule.smiles not in known:
        reward += novelty_bonus
    alerts = sum(1 for f in report.warnings if f.rule in ("pains", "brenk", "nih"))
    return round(reward - alert_penalty * min(alerts, 4), 4)


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages: rewards standardised within the group (zero when all are equal)."""
    return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + eps)


def best_answer_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Leave-one-out credit for the group's best reward (what best-of-n measures): each answer gets how much
    the group's maximum would drop without it, so only a strictly best answer gets any, scaled like
    :func:`group_advantages`."""
    advantages = torch.zeros_like(rewards)
    if rewards.numel() < 2:
        return advantages
    top = rewards.topk(2).values
    advantages[int(rewards.argmax())] = top[0] - top[1]
    return advantages / (rewards.std(unbiased=False) + eps)


ADVANTAGES = ("group", "group+best")


def _answer_ids(tokenizer: ReasoningTokenizer, sample: GeneratedText) -> list[int]:
    trace = tokenizer.encode(sample.trace) if sample.trace else []
    smiles = [tokenizer.index.get(t, tokenizer.unk_id) for t in smiles_tokens(sample.smiles)]
    return trace + [tokenizer.smiles_start_id] + smiles + [tokenizer.smiles_end_id]


def sequence_logprobs(
    model: ReasoningLM, prompt_ids: list[int], answers: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of each answer after the prompt: ``(group, time)`` and its mask."""
    width = len(prompt_ids) + max(len(a) for a in answers)
    width = min(width, model.config.max_len)
    ids = torch.full((len(answers), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(answers), width - 1))
    for row, answer in enumerate(answers):
        seq = (prompt_ids + answer)[:width]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, len(prompt_ids) - 1 : len(seq) - 1] = 1.0
    logits = model(ids[:, :-1])
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return logp, mask


def grpo_step(
    model: ReasoningLM,
    reference: ReasoningLM,
    tokenizer: ReasoningTokenizer,
    optimizer: torch.optim.Optimizer,
    spec: DesignSpec | Sequence[DesignSpec],
    known: set[str],
    group: int = 8,
    kl_weight: float = 0.05,
    seed: int = 0,
    ground_estimates: bool = False,
    advantage: str = "group",
    answer_from_build: bool = False,
) -> dict:
    """One GRPO update: sample a group of answers per spec, score them with RDKit, push up the better ones.

    ``spec`` is one spec or several; their groups are decoded in one batch and their losses averaged into
    one optimizer step. A group whose answers all score alike carries no relative signal and is left out
    of the update (it is still counted in the returned rewards). With ``ground_estimates`` the answers are
    decoded with RDKit-grounded running estimates (``CompactReasoner(ground_estimates=True)``), and the
    estimate tokens RDKit wrote (not the policy) are left out of the loss. ``advantage="group+best"`` adds
    :func:`best_answer_advantages` to the group-relative ones, crediting the answer that makes the group's
    best-of-n. With ``answer_from_build`` each answer is the molecule its trace built, where that fits
    (``CompactReasoner(answer_from_build=True)``): the reward then judges the build steps, and the SMILES
    RDKit wrote for a built answer is left out of the loss like the grounded estimates.
    """
    if advantage not in ADVANTAGES:
        raise ValueError(f"advantage {advantage!r}: choose one of {', '.join(ADVANTAGES)}")
    specs = [spec] if isinstance(spec, DesignSpec) else list(spec)
    if not specs:
        raise ValueError("grpo_step needs at least one spec")
    prompts = [render_spec(s) for s in specs]
    prefixes = [restate_prefix(p) for p in prompts]  # written from the spec at inference too (ground_restate)
    groups = generate_many(
        model,
        tokenizer,
        prompts,
        group,
        elements=[list(s.elements) if s.elements is not None else None for s in specs],
        seed=seed,
        temperature=1.0,
        top_p=1.0,
        trace_prefixes=prefixes,
        bounds=[SmilesBounds.from_spec(s) for s in specs],  # as the Proposer decodes
        ground_estimates=ground_estimates,
        answer_from_build=answer_from_build,
    )
    all_rewards, policy_terms, kl_terms, used = [], [], [], 0
    optimizer.zero_grad(set_to_none=True)
    model.train()
    for one, prompt, prefix, samples in zip(specs, prompts, prefixes, groups, strict=True):
        rewards = torch.tensor([reward_for(one, s.smiles, known) for s in samples])
        all_rewards.append(rewards)
        advantages = group_advantages(rewards)
        if advantage == "group+best":
            advantages = advantages + best_answer_advantages(rewards)
        if not bool(advantages.abs().gt(0).any()):
            continue
        used += 1
        prefix_ids = tokenizer.encode(prefix)
        prompt_ids = tokenizer.encode(prompt, bos=True) + prefix_ids
        answers = [_answer_ids(tokenizer, s)[len(prefix_ids) :] for s in samples]
        logp, mask = sequence_logprobs(model, prompt_ids, answers, tokenizer.pad_id)
        if ground_estimates:  # the grounded numbers were written for the policy: no credit or blame for them
            for row, answer in enumerate(answers):
                written = forced_positions(prompt, [tokenizer.tokens[i] for i in answer])
                for k, was_forced in enumerate(written):
                    if was_forced and len(prompt_ids) - 1 + k < mask.shape[1]:
                        mask[row, len(prompt_ids) - 1 + k] = 0.0
        for row, (sample, answer) in enumerate(zip(samples, answers, strict=True)):
            if sample.built:  # RDKit wrote this SMILES (and its end) from the build: only the trace is the policy's
                first = len(prompt_ids) - 1 + len(answer) - len(smiles_tokens(sample.smiles)) - 1
                mask[row, max(first, 0) :] = 0.0
        with torch.no_grad():
            ref_logp, _ = sequence_logprobs(reference, prompt_ids, answers, tokenizer.pad_id)
        tokens = mask.sum(dim=1).clamp(min=1)
        policy = -((advantages.unsqueeze(1) * logp * mask).sum(dim=1) / tokens).mean()
        # k3 estimator of KL(policy || reference), always >= 0
        log_ratio = (ref_logp - logp) * mask
        kl = ((torch.exp(log_ratio) - log_ratio - 1) * mask).sum(dim=1).div(tokens).mean()
        ((policy + kl_weight * kl) / len(specs)).backward()
        policy_terms.append(policy.item())
        kl_terms.append(kl.item())
    if used:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    rewards = torch.cat(all_rewards)
    return {
        "reward_mean": round(float(rewards.mean()), 4),
        "reward_max": round(float(rewards.max()), 4),
        "satisfied": int(sum(1 for r in rewards if r >= 3.0)),
        "specs_satisfied": int(sum(1 for r in all_rewards if float(r.max()) >= 3.0)),
        "specs": len(specs),
        "groups_used": used,
        "loss": round(sum(policy_terms) / len(specs) + kl_weight * sum(kl_terms) / len(specs), 4),
        "kl": round(sum(kl_terms) / max(used, 1), 5),
    }


def main(argv: list[str] | None = None) -> dict:
    """Command line: GRPO from a checkpoint on specs taken from trace records; JSON-lines log in --out."""
    from reasoning.traces import read_traces

    parser = argparse.ArgumentParser(description="Stage (c): GRPO with an RDKit reward.")
    parser.add_argument("--init", required=True)
    parser.add_argument("--traces", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--group", type=int, default=8, help="answers sampled per spec")
    parser.add_argument("--specs-per-step", type=int, default=8, help="specs (groups) per optimizer step")
    parser.add_argument(
        "--no-ground-estimates",
        dest="ground_estimates",
        action="store_false",
        help="sample the running estimates too (the shipped stage (c) model was trained with them grounded)",
    )
    parser.add_argument(
        "--advantage",
        choices=ADVANTAGES,
        default="group",
        help="group: rewards standardised within each group; group+best: plus leave-one-out credit for the best",
    )
    parser.add_argument(
        "--answer-from-build",
        action="store_true",
        help="answer with the molecule each trace built (the reward then lands on the build steps)",
    )
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--kl-weight", type=float, default=0.05)
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--max-minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start_folder = out if (out / "model.safetensors").exists() else Path(args.init)
    model = ReasoningLM.from_pretrained(start_folder)
    reference = ReasoningLM.from_pretrained(args.init)
    tokenizer = ReasoningTokenizer.load(args.init)
    records = [r for path in args.traces for r in read_traces(path)]
    known = {r["smiles"] for r in records}
    known |= {_canonical(s) for s in list(known)}
    specs = [DesignSpec.from_dict(r["spec"]) for r in records]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    log_path = out / "rl_log.jsonl"
    step = len(log_path.read_text().splitlines()) if log_path.exists() else 0
    rng = random.Random(args.seed + step)
    begin = time.time()
    summary: dict = {}
    while step < args.max_steps and (time.time() - begin) / 60 < args.max_minutes:
        chosen = [specs[rng.randrange(len(specs))] for _ in range(args.specs_per_step)]
        summary = {
            "step": step + 1,
            **grpo_step(
                model,
                reference,
                tokenizer,
                optimizer,
                chosen,
                known,
                args.group,
                args.kl_weight,
                seed=args.seed * 100003 + step,
                ground_estimates=args.ground_estimates,
                advantage=args.advantage,
                answer_from_build=args.answer_from_build,
            ),
            "elapsed_s": round(time.time() - begin, 1),
        }
        step += 1
        with open(log_path, "a") as fh:
            fh.write(json.dumps(summary) + "\n")
        if step % 20 == 0:
            model.save_pretrained(out, tokenizer, dtype=torch.float16)
    model.save_pretrained(out, tokenizer, dtype=torch.float16)
    (out / "rl_config.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    return summary


def _canonical(smiles: str) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else smiles


if __name__ == "__main__":
    main()
