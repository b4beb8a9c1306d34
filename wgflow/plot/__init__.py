"""Matplotlib figures, one module per figure family.

========================  ==================================================================
module                    figures
========================  ==================================================================
``policies``              :func:`plot_policy` (density heatmap), :func:`plot_geodesic` and
                          :func:`plot_frames_by_state` (fans of action densities along a flow
                          or geodesic, panels titled by state values)
``fields``                over the state space: :func:`plot_solution` (V, mean action, spread,
                          occupancy), :func:`plot_state_field`, :func:`plot_field_snapshots`
``convergence``           :func:`plot_convergence`: ``J - J*`` of several schemes on one log
                          axis (flow time, wall time or steps) with the rounding level shaded,
                          and the distance to ``pi*``
``spectrum``              :func:`plot_spectrum`, :func:`plot_eigenfields` (modes as action
                          fields over states), :func:`plot_rate` (predicted vs measured rate)
``checks``                :func:`plot_checks`: the ``verify`` table's errors and tolerances
``animation``             :func:`animate_flow`: GIF (pillow) or MP4 (ffmpeg)
========================  ==================================================================

Every function draws on given axes or creates a constrained-layout figure, names the axes by the
grids' names and units (``theta [rad]``), labels its colorbars, returns the Figure or Axes, and
never calls ``plt.show()`` (any backend works, including ``Agg``).
"""
from .policies import plot_geodesic, plot_policy, plot_frames_by_state
from .fields import plot_state_field, plot_solution, plot_field_snapshots, policy_fields
from .convergence import plot_convergence, rounding_floor
from .spectrum import plot_spectrum, plot_eigenfields, plot_rate, mode_mean_shift
from .checks import plot_checks
from .animation import animate_flow, ffmpeg_available

__all__ = ["plot_geodesic", "plot_policy", "plot_frames_by_state", "plot_state_field",
           "plot_solution", "plot_field_snapshots", "policy_fields", "plot_convergence",
           "rounding_floor", "plot_spectrum", "plot_eigenfields", "plot_rate", "mode_mean_shift",
           "plot_checks", "animate_flow", "ffmpeg_available"]
