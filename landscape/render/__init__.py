"""Figures of surfaces: matplotlib views and plots, the comparison figure, the HTML report, VTK export."""
