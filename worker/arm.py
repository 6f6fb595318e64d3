"""The planar RR arm of the robotics bundle: two revolute joints, link lengths 1 and 1 (pure).

A feature row is (theta1, theta2, dx, dy): joint angles in radians and a requested step of the
end effector. The arm is singular where sin(theta2) = 0 (stretched or folded), which is where
the bundle's denominator vanishes and its answers become bottoms.
"""

from __future__ import annotations

from typing import Final

import numpy as np

DLS_DAMPING: Final = 0.01
LINKS: Final = (1.0, 1.0)


def jacobian(
    theta1: np.ndarray, theta2: np.ndarray, links: tuple[float, float] = LINKS
) -> np.ndarray:
    """d(x, y)/d(theta1, theta2), shape (n, 2, 2)."""
    l1, l2 = links
    s1, c1 = np.sin(theta1), np.cos(theta1)
    s12, c12 = np.sin(theta1 + theta2), np.cos(theta1 + theta2)
    row_x = np.stack([-l1 * s1 - l2 * s12, -l2 * s12], axis=-1)
    row_y = np.stack([l1 * c1 + l2 * c12, l2 * c12], axis=-1)
    return np.stack([row_x, row_y], axis=-2)


def damped_least_squares(
    readings: np.ndarray, damping: float = DLS_DAMPING, links: tuple[float, float] = LINKS
) -> np.ndarray:
    """Joint steps J^T (J J^T + damping^2 I)^-1 (dx, dy) for rows (theta1, theta2, dx, dy).

    The formula of zeroproofml's reference deployment (``_solve_rr_dls_batch``: the same
    closed-form 2x2 inverse, damping squared), in float64. With damping > 0 the system is
    regular even where the arm is exactly singular: det >= damping**4.
    """
    rows = np.asarray(readings, dtype=np.float64).reshape(-1, 4)
    t1, t2, dx, dy = rows.T
    jac = jacobian(t1, t2, links)
    j11, j12, j21, j22 = jac[:, 0, 0], jac[:, 0, 1], jac[:, 1, 0], jac[:, 1, 1]
    lam2 = float(damping) ** 2
    a = j11 * j11 + j12 * j12 + lam2
    b = j11 * j21 + j12 * j22
    d = j21 * j21 + j22 * j22 + lam2
    det = a * d - b * b
    ux = (d * dx - b * dy) / det
    uy = (a * dy - b * dx) / det
    return np.stack([j11 * ux + j21 * uy, j12 * ux + j22 * uy], axis=-1)
