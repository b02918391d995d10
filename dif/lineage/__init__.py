"""Model lineage: is generator B derived from generator A? Compare their fingerprints.

A naive Pearson correlation between two fingerprints fails (docs/lineage.md):
every fingerprint also holds what the whole population shares (the fingerprint
network's prior, the extractor's bias, the generic "fake versus real"
direction), a fingerprint's sign is arbitrary (only ``fake_centre -
real_centre`` fixes it), and a child's fingerprint may be a shifted copy of its
parent's. So, for a pair A, B and a population of fingerprints:

1. orient both so that each points towards its own generator's images;
2. project both off the shared subspace of the population *without A and B*
   (a member's own share of a mean would bias its pair): the mean raw
   fingerprint (shared prior, whatever the sign), the mean oriented one (shared
   fake direction) and the ``components`` leading principal directions of what
   remains (a prior shared by a subgroup, e.g. fingerprints trained from one seed);
3. correlate them at every circular shift at once by FFT (a Pearson
   correlation per shift);
4. test two hypotheses: *aligned* (zero shift: crops sit on the generator's
   pixel grid, so a child's pattern usually lies where its parent's does) and
   *shifted* (the best correlation within ``±max_shift``);
5. calibrate both against an empirical null (Efron, 2004) fitted on every
   pair of the population: the Fisher-transformed zero-shift correlation,
   summarised by median and MAD, and for the shifted hypothesis the maximum of
   an effective number of such values (Sidak), fitted to the pairs' window
   peaks. Most pairs of a population are unrelated and the robust summaries
   ignore the few that are not. Each hypothesis gets half the false-positive
   budget ``alpha`` (Bonferroni); the similarity is the combined p-value
   written as a z-score, so one threshold serves both.

The peak-to-correlation energy (PCE) at the retained shift is reported but not
decided on: a generator's trace is periodic (its upsampling period), so the
correlation surface repeats the peak every period and the PCE's "energy away
from the peak" holds the signal itself (docs/lineage.md has the numbers).

Everything about the population is computed once: its members' spectra and
Gram matrix; the shared subspace of any subset of members lies in the span of
their unit vectors, so leaving a pair out costs an ``n x n`` eigenproblem and
one combination of spectra, never a pass over pixels.

The package splits by concern: ``pairs`` (one pair's statistics), ``null`` (the settings and
the empirical null), ``population`` (shared subspace, pair statistics against it) and
``decision`` (calibrated comparisons and the matrix); this module is its public API.
"""

from dif.lineage.decision import Comparison, LineageMatrix, calibrate, compare, matrix
from dif.lineage.null import MIN_POPULATION, STATISTIC, LineageConfig, LineageError, Null
from dif.lineage.pairs import PairStats, correlation_surface, fisher, inverse_upper_tail, orientation, unit, upper_tail
from dif.lineage.population import Population, Side

__all__ = [
    "MIN_POPULATION", "STATISTIC", "Comparison", "LineageConfig", "LineageError", "LineageMatrix", "Null",
    "PairStats", "Population", "Side", "calibrate", "compare", "correlation_surface", "fisher",
    "inverse_upper_tail", "matrix", "orientation", "unit", "upper_tail",
]
