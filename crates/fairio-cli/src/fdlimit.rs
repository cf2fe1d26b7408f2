//! The open-file limit: raised when a run needs more descriptors than the soft limit allows.

/// Makes sure `need` descriptors can be open at once. When the soft `RLIMIT_NOFILE` is lower,
/// it is raised, up to the hard limit.
///
/// # Errors
/// A message with both numbers when even the hard limit is too low, or the raise fails.
#[cfg(unix)]
pub(crate) fn ensure(need: u64) -> Result<(), String> {
    use rlimit::Resource;
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    if soft >= need {
        return Ok(());
    }
    if hard < need {
        return Err(format!(
            "this run needs about {need} open files, but the hard limit is {hard} \
             (soft {soft}); raise it (ulimit -Hn {need} as root) or use fewer connections"
        ));
    }
    Resource::NOFILE.set(need, hard).map_err(|e| {
        format!(
            "this run needs about {need} open files; raising the soft limit from {soft} failed: {e}"
        )
    })?;
    tracing::debug!(from = soft, to = need, "raised the open-file limit");
    Ok(())
}

/// Other platforms have no such limit to raise; a shortage shows at run time.
#[cfg(not(unix))]
pub(crate) fn ensure(_need: u64) -> Result<(), String> {
    Ok(())
}

/// Raises the soft open-file limit to the hard one, as a server that must not run out does;
/// the soft limit in force after.
#[cfg(unix)]
pub(crate) fn raise_to_hard() -> usize {
    use rlimit::Resource;
    match Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            if soft < hard && Resource::NOFILE.set(hard, hard).is_ok() {
                return usize::try_from(hard).unwrap_or(usize::MAX);
            }
            usize::try_from(soft).unwrap_or(usize::MAX)
        }
        Err(_) => usize::MAX,
    }
}

/// Other platforms: no limit known.
#[cfg(not(unix))]
pub(crate) fn raise_to_hard() -> usize {
    usize::MAX
}
