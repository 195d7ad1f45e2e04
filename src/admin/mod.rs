//! Administration: the command line (and, later, the admin API and page).

pub mod cli;
