"""Virtual cells: a stochastic gene-regulatory-network data engine for perturbation screens
(knockouts, knockdowns, CRISPRa, doubles, drugs) with known ground truth."""

from biowm.core.registry import Domain, register
from biowm.domains.cell import cli
from biowm.domains.cell.grn import GeneNetworkSimulator, random_network


def make_simulator(n_genes: int = 500, seed: int = 0) -> GeneNetworkSimulator:
    """A random regulatory network of `n_genes` genes as a batched simulator."""
    return GeneNetworkSimulator(random_network(n_genes, seed))


DOMAIN = register(
    Domain(
        name="cell",
        summary="Virtual cells: perturbation screens, a perturbation world model, "
                "experiment design",
        make_simulator=make_simulator,
        commands={"simulate": cli.simulate, "train": cli.train, "predict": cli.predict,
                  "plan": cli.plan, "benchmark": cli.benchmark},
    )
)

__all__ = ["DOMAIN", "GeneNetworkSimulator", "make_simulator"]
