//! A `library.v1.Library` server (tests/protos/http) for the end-to-end
//! HTTP/JSON tests: books kept in memory, every method answering from
//! them, so a test sees what each binding put into the request.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Mutex;

use svc_runtime::tonic::{self, Request, Response, Status};
use svc_tests::default::library::v1::library_server::Library;
use svc_tests::default::library::v1::*;
use tokio_stream::Stream;

#[derive(Default)]
struct Books(Mutex<BTreeMap<String, Book>>);

impl Books {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Book>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[tonic::async_trait]
impl Library for Books {
    async fn get_book(&self, r: Request<GetBookRequest>) -> Result<Response<Book>, Status> {
        let r = r.into_inner();
        let mut book =
            self.lock().get(&r.name).cloned().ok_or_else(|| Status::not_found(format!("no book {}", r.name)))?;
        if !r.include_labels {
            book.labels.clear();
        }
        if let Some(as_of) = r.as_of {
            book.published = Some(as_of);
        }
        Ok(Response::new(book))
    }

    async fn list_books(&self, r: Request<ListBooksRequest>) -> Result<Response<ListBooksResponse>, Status> {
        let r = r.into_inner();
        let prefix = format!("{}/books/", r.parent);
        let filter = r.filter.unwrap_or_default();
        let books: Vec<Book> = self
            .lock()
            .values()
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| r.genres.is_empty() || r.genres.contains(&b.genre))
            .filter(|b| filter.author.is_empty() || b.authors.contains(&filter.author))
            .filter(|b| b.pages >= filter.min_pages)
            .take(if r.page_size > 0 { r.page_size as usize } else { usize::MAX })
            .cloned()
            .collect();
        Ok(Response::new(ListBooksResponse { books, next_page_token: r.page_token }))
    }

    async fn create_book(&self, r: Request<CreateBookRequest>) -> Result<Response<Book>, Status> {
        let r = r.into_inner();
        let mut book = r.book.unwrap_or_default();
        let id = if r.request_id.is_empty() { format!("b{}", self.lock().len() + 1) } else { r.request_id };
        book.name = format!("{}/books/{id}", r.parent);
        let mut books = self.lock();
        if books.contains_key(&book.name) {
            return Err(Status::already_exists(format!("{} exists", book.name)));
        }
        books.insert(book.name.clone(), book.clone());
        Ok(Response::new(book))
    }

    /// Replaces the book, or only the fields its mask names (`title`,
    /// `pages`).
    async fn update_book(&self, r: Request<UpdateBookRequest>) -> Result<Response<Book>, Status> {
        let r = r.into_inner();
        let book = r.book.unwrap_or_default();
        let mut books = self.lock();
        let Some(slot) = books.get_mut(&book.name) else {
            return Err(Status::not_found(format!("no book {}", book.name)));
        };
        match r.update_mask {
            Some(mask) if !mask.paths.is_empty() => {
                for path in &mask.paths {
                    match path.as_str() {
                        "title" => slot.title = book.title.clone(),
                        "pages" => slot.pages = book.pages,
                        other => return Err(Status::invalid_argument(format!("cannot update {other}"))),
                    }
                }
            }
            _ => *slot = book,
        }
        Ok(Response::new(slot.clone()))
    }

    async fn delete_book(&self, r: Request<DeleteBookRequest>) -> Result<Response<DeleteBookResponse>, Status> {
        let name = r.into_inner().name;
        match self.lock().remove(&name) {
            Some(_) => Ok(Response::new(DeleteBookResponse {})),
            None => Err(Status::not_found(format!("no book {name}"))),
        }
    }

    async fn move_book(&self, r: Request<MoveBookRequest>) -> Result<Response<Book>, Status> {
        let r = r.into_inner();
        let mut books = self.lock();
        let mut book = books.remove(&r.name).ok_or_else(|| Status::not_found(format!("no book {}", r.name)))?;
        let id = r.name.rsplit('/').next().unwrap_or_default().to_owned();
        book.name = format!("{}/books/{id}", r.other_shelf);
        books.insert(book.name.clone(), book.clone());
        Ok(Response::new(book))
    }

    /// The file's name as its content; a `tenant` in the metadata is
    /// named too, and the shelf comes back as `shelf` metadata.
    async fn get_file(&self, r: Request<GetFileRequest>) -> Result<Response<File>, Status> {
        let tenant = r.metadata().get("tenant").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let r = r.into_inner();
        let mut content = format!("shelf {} file {}", r.shelf, r.path);
        if let Some(tenant) = tenant {
            content.push_str(&format!(" for {tenant}"));
        }
        let mut response = Response::new(File { content: content.into_bytes() });
        if let Ok(shelf) = r.shelf.to_string().parse() {
            response.metadata_mut().insert("shelf", shelf);
        }
        Ok(response)
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<Change, Status>> + Send>>;

    /// Three changes of the shelf; shelf 0 fails after the first.
    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let id = r.into_inner().shelf.unwrap_or_default().id;
        if id < 0 {
            return Err(Status::invalid_argument("shelf ids are not negative"));
        }
        let change = |i: i64| Ok(Change { book: format!("shelves/{id}/books/{i}"), kind: "updated".to_owned() });
        let items: Vec<Result<Change, Status>> = match id {
            0 => vec![change(1), Err(Status::unavailable("the shelf went away"))],
            _ => (1..=3).map(change).collect(),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn audit(&self, _: Request<DeleteBookRequest>) -> Result<Response<DeleteBookResponse>, Status> {
        Ok(Response::new(DeleteBookResponse {}))
    }
}

#[tokio::main]
async fn main() -> Result<(), svc_runtime::server::Error> {
    library_svc::serve(Books::default()).await
}
