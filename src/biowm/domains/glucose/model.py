"""The UVA/Padova 2008 13-state glucose-insulin model, vectorised over patients.

Written from the published equations (Dalla Man et al., IEEE TBME 2007; Kovatchev et al.,
JDST 2009) with the meal-ingestion semantics of the academic simulator: a meal announced in
grams is eaten at 5 g/min, and the gastric-emptying rate uses the size of the meal in
progress (stomach content when eating started plus what has been eaten since). Every
tensor here is `[B]` (one entry per patient) or `[13, B]` for the state, rows contiguous
so that each state variable is one vector operation.

State (mg/kg unless noted): 0 Qsto1 solid stomach (mg), 1 Qsto2 liquid stomach (mg),
2 Qgut (mg), 3 Gp plasma glucose, 4 Gt tissue glucose, 5 Ip plasma insulin (pmol/kg),
6 X insulin action on utilisation (pmol/L), 7 I1, 8 Id delayed insulin (pmol/L),
9 Il liver insulin (pmol/kg), 10 Isc1, 11 Isc2 subcutaneous insulin (pmol/kg),
12 Gs subcutaneous glucose.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from biowm.domains.glucose.patients import MODEL_PARAMETERS

EAT_RATE_G_PER_MIN = 5.0
PMOL_PER_U = 6000.0


@dataclass(frozen=True)
class ModelParameters:
    """Per-patient parameters as contiguous `[B]` vectors, named as in the publication."""

    BW: torch.Tensor
    kabs: torch.Tensor
    kmax: torch.Tensor
    kmin: torch.Tensor
    b: torch.Tensor
    d: torch.Tensor
    Vg: torch.Tensor
    Vi: torch.Tensor
    Vmx: torch.Tensor
    Km0: torch.Tensor
    k1: torch.Tensor
    k2: torch.Tensor
    p2u: torch.Tensor
    m1: torch.Tensor
    m2: torch.Tensor
    m4: torch.Tensor
    m30: torch.Tensor
    ki: torch.Tensor
    kp1: torch.Tensor
    kp2: torch.Tensor
    kp3: torch.Tensor
    f: torch.Tensor
    ke1: torch.Tensor
    ke2: torch.Tensor
    Fsnc: torch.Tensor
    Vm0: torch.Tensor
    Ib: torch.Tensor
    kd: torch.Tensor
    ksc: torch.Tensor
    ka1: torch.Tensor
    ka2: torch.Tensor
    u2ss: torch.Tensor

    @classmethod
    def from_matrix(cls, params: torch.Tensor) -> ModelParameters:
        """From `[B, len(MODEL_PARAMETERS)]` (the layout kept in simulator state)."""
        columns = params.T.contiguous()
        return cls(**{name: columns[i] for i, name in enumerate(MODEL_PARAMETERS)})

    @property
    def basal_insulin_u_per_min(self) -> torch.Tensor:
        """Insulin rate that holds the patient at its steady state: u2ss·BW/6000."""
        return self.u2ss * self.BW / PMOL_PER_U


def _nonneg_gate(x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Compartments that are empty stay empty: zero the derivative where x < 0."""
    return torch.where(x >= 0, dx, torch.zeros_like(dx))


def derivatives(
    x: torch.Tensor,
    carbs_mg_per_min: torch.Tensor,
    insulin_pmol_per_kg_per_min: torch.Tensor,
    meal_size_mg: torch.Tensor,
    p: ModelParameters,
) -> torch.Tensor:
    """dx/dt `[13, B]` (per minute) for state `x [13, B]` and inputs held over the step."""
    qsto1, qsto2, qgut, gp, gt, ip, xa, i1, idel, il, isc1, isc2, gs = x.unbind(0)

    qsto = qsto1 + qsto2
    has_meal = meal_size_mg > 0
    size = torch.where(has_meal, meal_size_mg, torch.ones_like(meal_size_mg))
    alpha = 5.0 / (2.0 * size * (1.0 - p.b))
    beta = 5.0 / (2.0 * size * p.d)
    kgut_meal = p.kmin + (p.kmax - p.kmin) / 2.0 * (
        torch.tanh(alpha * (qsto - p.b * size)) - torch.tanh(beta * (qsto - p.d * size)) + 2.0
    )
    kgut = torch.where(has_meal, kgut_meal, p.kmax)

    d_qsto1 = -p.kmax * qsto1 + carbs_mg_per_min
    d_qsto2 = p.kmax * qsto1 - kgut * qsto2
    d_qgut = kgut * qsto2 - p.kabs * qgut

    appearance = p.f * p.kabs * qgut / p.BW
    production = torch.clamp(p.kp1 - p.kp2 * gp - p.kp3 * idel, min=0.0)
    renal = p.ke1 * torch.clamp(gp - p.ke2, min=0.0)
    d_gp = production + appearance - p.Fsnc - renal - p.k1 * gp + p.k2 * gt
    utilisation = (p.Vm0 + p.Vmx * xa) * gt / (p.Km0 + gt)
    d_gt = -utilisation + p.k1 * gp - p.k2 * gt

    d_ip = -(p.m2 + p.m4) * ip + p.m1 * il + p.ka1 * isc1 + p.ka2 * isc2
    plasma_insulin = ip / p.Vi
    d_xa = p.p2u * (plasma_insulin - p.Ib - xa)
    d_i1 = -p.ki * (i1 - plasma_insulin)
    d_idel = -p.ki * (idel - i1)
    d_il = -(p.m1 + p.m30) * il + p.m2 * ip
    d_isc1 = insulin_pmol_per_kg_per_min - (p.ka1 + p.kd) * isc1
    d_isc2 = p.kd * isc1 - p.ka2 * isc2
    d_gs = p.ksc * (gp - gs)

    return torch.stack(
        [
            d_qsto1,
            d_qsto2,
            d_qgut,
            _nonneg_gate(gp, d_gp),
            _nonneg_gate(gt, d_gt),
            _nonneg_gate(ip, d_ip),
            d_xa,
            d_i1,
            d_idel,
            _nonneg_gate(il, d_il),
            _nonneg_gate(isc1, d_isc1),
            _nonneg_gate(isc2, d_isc2),
            _nonneg_gate(gs, d_gs),
        ]
    )


def rk4_minute(
    x: torch.Tensor,
    carbs_mg_per_min: torch.Tensor,
    insulin_pmol_per_kg_per_min: torch.Tensor,
    meal_size_mg: torch.Tensor,
    p: ModelParameters,
    substeps: int = 1,
) -> torch.Tensor:
    """Advance `x [13, B]` by one minute with inputs held constant (classical RK4)."""
    h = 1.0 / substeps
    for _ in range(substeps):
        args = (carbs_mg_per_min, insulin_pmol_per_kg_per_min, meal_size_mg, p)
        k1 = derivatives(x, *args)
        k2 = derivatives(x + (0.5 * h) * k1, *args)
        k3 = derivatives(x + (0.5 * h) * k2, *args)
        k4 = derivatives(x + h * k3, *args)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return x


@dataclass
class MealProgress:
    """Eating state per patient, `[B]` each: what is still to eat and the meal in progress."""

    planned_carbs_g: torch.Tensor
    eaten_last_minute_g: torch.Tensor
    meal_start_stomach_mg: torch.Tensor
    meal_eaten_g: torch.Tensor
    eating: torch.Tensor


def advance_minute(
    x: torch.Tensor,
    meal: MealProgress,
    insulin_pmol_per_kg_per_min: torch.Tensor,
    p: ModelParameters,
    substeps: int = 1,
) -> tuple[torch.Tensor, MealProgress]:
    """One minute: eat up to 5 g of what is planned, then integrate the ODE over the minute.

    A meal starts when eating resumes after a minute without food; its size for gastric
    emptying is the stomach content at that moment plus everything eaten since.
    """
    eat = torch.clamp(meal.planned_carbs_g, max=EAT_RATE_G_PER_MIN)
    planned = torch.clamp(meal.planned_carbs_g - eat, min=0.0)
    starts = (eat > 0) & (meal.eaten_last_minute_g <= 0)
    meal_start = torch.where(starts, x[0] + x[1], meal.meal_start_stomach_mg)
    meal_eaten = torch.where(starts, torch.zeros_like(eat), meal.meal_eaten_g)
    eating = meal.eating | starts
    meal_eaten = meal_eaten + torch.where(eating, eat, torch.zeros_like(eat))
    eating = eating & ~((eat <= 0) & (meal.eaten_last_minute_g > 0))
    meal_size_mg = meal_start + meal_eaten * 1000.0
    x = rk4_minute(x, eat * 1000.0, insulin_pmol_per_kg_per_min, meal_size_mg, p, substeps)
    return x, MealProgress(planned, eat, meal_start, meal_eaten, eating)
