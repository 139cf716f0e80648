//! The job kinds PySaaS ships with. Handlers live in `pysaas-workers`.

pub mod billing;
pub mod notification;
pub mod profile;
pub mod system;
