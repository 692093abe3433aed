//! `sqlx::migrate!` embeds the migrations at compile time; this makes a new or edited
//! migration rebuild the crate (cargo would not look at that folder otherwise).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
