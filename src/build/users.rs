//! Resolves `--chown` and `USER` specifications (`user[:group]`, names or
//! numbers) against an image's `/etc/passwd` and `/etc/group`, as Docker
//! does: a name must exist in the image, a number is taken as it is, and a
//! user given without a group gets the user's primary group.

/// Errors of user and group resolution.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid owner {0:?}: write USER[:GROUP] with names or numbers")]
    InvalidSpec(String),
    #[error("user {name:?} not found in the image's /etc/passwd; create it in an earlier RUN step or give a numeric uid")]
    UnknownUser { name: String },
    #[error("group {name:?} not found in the image's /etc/group; create it in an earlier RUN step or give a numeric gid")]
    UnknownGroup { name: String },
}

/// A resolved owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(PasswdEntry { name, uid, gid })
    })
}

fn group_id(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        let _password = fields.next()?;
        fields.next()?.parse().ok()
    })
}

/// Resolves `spec` with the contents of the image's passwd and group files
/// (empty text when a file does not exist).
pub fn resolve_owner(spec: &str, passwd: &str, group: &str) -> Result<Owner, Error> {
    let (user, group_part) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    if user.is_empty() || group_part == Some("") || spec.contains(char::is_whitespace) {
        return Err(Error::InvalidSpec(spec.to_string()));
    }

    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => {
            let primary = passwd_entries(passwd).find(|e| e.uid == uid).map(|e| e.gid);
            (uid, primary)
        }
        Err(_) => {
            let entry = passwd_entries(passwd)
                .find(|e| e.name == user)
                .ok_or_else(|| Error::UnknownUser {
                    name: user.to_string(),
                })?;
            (entry.uid, Some(entry.gid))
        }
    };

    let gid = match group_part {
        None => primary_gid.unwrap_or(uid),
        Some(name_or_id) => match name_or_id.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_id(group, name_or_id).ok_or_else(|| Error::UnknownGroup {
                name: name_or_id.to_string(),
            })?,
        },
    };
    Ok(Owner { uid, gid })
}

/// Returns the supplementary groups of the user in `spec` (`user` or
/// `user:group`, by name or id): the ids of the groups in the group file
/// that list the user's name as a member, as `docker run --user` gives
/// them. A user without a passwd entry has none.
pub fn supplementary_groups(spec: &str, passwd: &str, group: &str) -> Vec<u32> {
    let user = spec.split_once(':').map_or(spec, |(user, _)| user);
    let name = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd)
            .find(|entry| entry.uid == uid)
            .map(|entry| entry.name),
        Err(_) => Some(user),
    };
    let Some(name) = name else {
        return Vec::new();
    };
    let mut gids: Vec<u32> = group
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let members = fields.get(3)?;
            members
                .split(',')
                .any(|member| member.trim() == name)
                .then(|| fields.get(2)?.parse().ok())?
        })
        .collect();
    gids.sort_unstable();
    gids.dedup();
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplementary_groups_from_membership() {
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let group = "root:x:0:\naudio:x:29:alice,bob\nvideo:x:44:bob, alice\nalice:x:1000:\n";
        assert_eq!(supplementary_groups("alice", passwd, group), [29, 44]);
        assert_eq!(supplementary_groups("1000:1000", passwd, group), [29, 44]);
        assert!(supplementary_groups("root", passwd, group).is_empty());
        assert!(supplementary_groups("4242", passwd, group).is_empty());
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          www:x:33:34:web:/var/www:/usr/sbin/nologin\n\
                          broken line\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:34:\nstaff:x:50:www\n";

    #[test]
    fn resolve_owner_cases() {
        let cases = [
            ("root", (0, 0)),
            ("www", (33, 34)),
            ("www:staff", (33, 50)),
            ("33", (33, 34)),
            ("1000", (1000, 1000)),
            ("1000:50", (1000, 50)),
            ("www:7", (33, 7)),
        ];
        for (spec, (uid, gid)) in cases {
            let owner = resolve_owner(spec, PASSWD, GROUP).unwrap();
            assert_eq!(owner, Owner { uid, gid }, "spec {spec}");
        }
    }

    #[test]
    fn resolve_owner_errors() {
        let unknown_user = resolve_owner("nobody", PASSWD, GROUP).unwrap_err();
        assert!(
            matches!(unknown_user, Error::UnknownUser { .. }),
            "{unknown_user}"
        );
        let unknown_group = resolve_owner("www:wheel", PASSWD, GROUP).unwrap_err();
        assert!(
            unknown_group.to_string().contains("\"wheel\""),
            "{unknown_group}"
        );
        for bad in ["", ":5", "www:", "a b"] {
            let err = resolve_owner(bad, PASSWD, GROUP).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{bad:?}: {err}");
        }
    }
}
