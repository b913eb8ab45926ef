"""The Dirichlet head over a Galaxy Zoo tree (GZ DESI by default) and its Dirichlet-multinomial loss.

As in Zoobot (Walmsley et al. 2022), the head predicts one Dirichlet concentration per answer,
squeezed into (1, 101) by ``1 + 100 * sigmoid(x)``. Within each question the concentrations
define a Dirichlet over the probabilities of a typical volunteer's answers; the observed vote
counts are scored with the Dirichlet-multinomial likelihood, summed over questions (questions
are treated as independent; a question nobody was asked has zero votes and costs nothing).

The head's module layout mirrors Zoobot's ``Sequential(Dropout, Sequential(Linear, ScaledSigmoid))``
so that a Zoobot checkpoint's ``head.1.0.weight`` / ``head.1.0.bias`` load unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raregal.inputs import gz_trees as schema

#: Lower and upper bound of the predicted concentrations (Zoobot's choice).
CONCENTRATION_MIN = 1.0
CONCENTRATION_SPAN = 100.0


class ScaledSigmoid(nn.Module):
    """``1 + 100 * sigmoid(x)``: maps logits to concentrations in (1, 101)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return CONCENTRATION_MIN + CONCENTRATION_SPAN * torch.sigmoid(x)


def dirichlet_head(in_features: int, n_answers: int = len(schema.ANSWERS), dropout: float = 0.2) -> nn.Sequential:
    """Dropout, then a linear map (in_features -> n_answers) and :class:`ScaledSigmoid`.

    Input (B, in_features) representation; output (B, n_answers) concentrations in (1, 101).
    """
    return nn.Sequential(nn.Dropout(dropout), nn.Sequential(nn.Linear(in_features, n_answers), ScaledSigmoid()))


def _questions(tree) -> list:
    """The questions of ``tree``: a :class:`raregal.inputs.gz_trees.Schema`, a list of Questions, or None (GZ DESI)."""
    if tree is None:
        return schema.TREE
    return tree.tree if isinstance(tree, schema.Schema) else tree


def question_matrix(tree=None) -> np.ndarray:
    """(n_answers, n_questions) 0/1 matrix: entry [a, q] is 1 when answer a belongs to question q.

    ``tree``: a :class:`raregal.inputs.gz_trees.Schema` or its list of questions (None: GZ DESI's).
    """
    tree = _questions(tree)
    n_answers = max(q.stop for q in tree)
    member = np.zeros((n_answers, len(tree)), dtype=np.float32)
    for j, q in enumerate(tree):
        member[q.slice, j] = 1.0
    return member


def fractions_from_concentrations(concentrations, tree=None):
    """Expected vote fraction of each answer within its question: alpha_a / sum of alpha over the question.

    Accepts a torch tensor or NumPy array of shape (B, A) (or (A,)), A the answers of ``tree``
    (None: GZ DESI's 34); returns the same type and shape. Each question's fractions sum to 1 (they
    are conditional on the question being asked).
    """
    is_torch = isinstance(concentrations, torch.Tensor)
    conc = concentrations if is_torch else np.asarray(concentrations, dtype=np.float64)
    out = torch.empty_like(conc) if is_torch else np.empty_like(conc)
    for q in _questions(tree):
        part = conc[..., q.slice]
        out[..., q.slice] = part / part.sum(-1, keepdims=True) if not is_torch else part / part.sum(-1, keepdim=True)
    return out


def dirichlet_multinomial_nll(concentrations: torch.Tensor, counts: torch.Tensor, tree=None) -> torch.Tensor:
    """Negative log-likelihood of vote counts under a Dirichlet-multinomial, per question.

    Parameters
    ----------
    concentrations : (B, A) tensor, > 0 (the head's output); A the answers of ``tree``.
    counts : (B, A) tensor of vote counts; NaN (missing) counts as 0 votes.
    tree : a :class:`raregal.inputs.gz_trees.Schema` or its questions (None: GZ DESI's 34 answers).

    Returns
    -------
    (B, n_questions) tensor: ``-log P(counts_q | N_q, alpha_q)`` for each question q, in nats.
    A question with no votes has loss 0 and passes no gradient (masked, not merely cancelling):
    a galaxy voted on in one campaign of an all-campaigns tree teaches only that campaign's questions.

    torch.distributions has no Dirichlet-multinomial (Pyro has one, but is not a dependency), so
    the log-density is written out with lgamma:
    ``log P = lgamma(A) - lgamma(N + A) + lgamma(N + 1) + sum_k [lgamma(n_k + a_k) - lgamma(a_k) - lgamma(n_k + 1)]``
    with ``A = sum_k a_k`` and ``N = sum_k n_k`` over the question's answers.
    """
    counts = torch.nan_to_num(counts.to(concentrations.dtype), nan=0.0)
    member = torch.as_tensor(question_matrix(tree), dtype=concentrations.dtype, device=concentrations.device)
    alpha_q = concentrations @ member  # (B, Q)
    n_q = counts @ member
    per_answer = torch.lgamma(counts + concentrations) - torch.lgamma(concentrations) - torch.lgamma(counts + 1.0)
    log_p = torch.lgamma(alpha_q) - torch.lgamma(n_q + alpha_q) + torch.lgamma(n_q + 1.0) + per_answer @ member
    return torch.where(n_q > 0, -log_p, torch.zeros_like(log_p))


def dirichlet_loss(concentrations: torch.Tensor, counts: torch.Tensor, tree=None,
                   weights: torch.Tensor | None = None) -> torch.Tensor:
    """Training loss: Dirichlet-multinomial NLL summed over questions, averaged over the batch (scalar, nats).

    ``weights``: optional (B,) per-galaxy weights of that average (``TrainConfig.rarity_weight``).
    """
    nll = dirichlet_multinomial_nll(concentrations, counts, tree).sum(dim=1)
    return nll.mean() if weights is None else (nll * weights.to(nll.device, nll.dtype)).mean()


def mean_fractions(counts: np.ndarray, tree=None) -> np.ndarray:
    """(A,) the catalog's average volunteer: each answer's share of all votes cast on its question.

    ``counts``: (N, A) vote counts of ``tree``'s answers (NaN counts as 0). An answer of a question
    nobody was asked gets 0.
    """
    counts = np.nan_to_num(np.asarray(counts, dtype=np.float64))
    member = question_matrix(tree).astype(np.float64)
    per_question = counts.sum(0) @ member  # (Q,) votes cast on each question
    total = member @ per_question  # (A,) votes cast on each answer's question
    return np.divide(counts.sum(0), total, out=np.zeros(counts.shape[1]), where=total > 0)


def vote_surprise(counts: torch.Tensor, mean: torch.Tensor, tree=None) -> torch.Tensor:
    """(B,) how far each galaxy's votes are from the average volunteer's, in nats.

    The sum over the questions the galaxy was asked of KL(its vote fractions || ``mean``'s), with
    ``mean`` (A,) from :func:`mean_fractions`: 0 for a galaxy voted on exactly as the catalog on
    average, ``-log mean_a`` for one whose every vote went to answer a. Used to weigh the Dirichlet
    loss towards galaxies whose answers are rare (``TrainConfig.rarity_weight``).
    """
    counts = torch.nan_to_num(counts.to(torch.float64), nan=0.0)
    member = torch.as_tensor(question_matrix(tree), dtype=torch.float64, device=counts.device)
    n_q = counts @ member  # (B, Q)
    n_a = n_q @ member.T  # (B, A) votes cast on each answer's question
    frac = torch.where(n_a > 0, counts / n_a.clamp_min(1.0), torch.zeros_like(counts))
    mean = mean.to(torch.float64).to(counts.device).clamp_min(1e-12)  # an answer nobody gave: a finite surprise
    terms = torch.where(frac > 0, frac * torch.log(frac.clamp_min(1e-12) / mean), torch.zeros_like(frac))
    return terms.sum(1)
